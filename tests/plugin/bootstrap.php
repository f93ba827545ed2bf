<?php
/**
 * Loads the WordPress that tests/plugin/run.mjs started (its wp-load.php,
 * with the plugin active and configured), so every test runs the plugin's
 * real code against the real MariaDB.
 *
 * @package real-time-event-trigger
 */

$wp_dir = getenv( 'RTET_WP_DIR' );
if ( ! $wp_dir || ! is_file( $wp_dir . '/wp-load.php' ) ) {
	fwrite( STDERR, "RTET_WP_DIR does not point at a WordPress: run tests/plugin/run.mjs\n" );
	exit( 1 );
}
$site = parse_url( getenv( 'RTET_SITE_URL' ) );
$_SERVER['HTTP_HOST']   = $site['host'] . ':' . $site['port'];
$_SERVER['SERVER_NAME'] = $site['host'];
$_SERVER['REQUEST_URI'] = '/';

require $wp_dir . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/admin.php';
require_once __DIR__ . '/lib/class-rtet-test-case.php';
