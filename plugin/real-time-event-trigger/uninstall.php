<?php
/**
 * Removes everything the plugin stored when it is deleted from the Plugins screen.
 *
 * @package real-time-event-trigger
 */

// Called by WordPress only.
if ( ! defined( 'WP_UNINSTALL_PLUGIN' ) ) {
	exit;
}

delete_option( 'rtet_settings' );
delete_transient( 'rtet_relay_slow' );
delete_post_meta_by_key( '_rtet_published' );
delete_metadata( 'comment', 0, '_rtet_announced', '', true );
delete_option( 'rtet_signing_failure' );

global $wpdb;
$wpdb->query( 'DROP TABLE IF EXISTS ' . $wpdb->prefix . 'rtet_pending' ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared,WordPress.DB.DirectDatabaseQuery
delete_option( 'rtet_queue_schema' );
delete_option( 'rtet_pending_events' );
wp_clear_scheduled_hook( 'rtet_retry_pending' );
delete_option( 'rtet_relay_state' );
