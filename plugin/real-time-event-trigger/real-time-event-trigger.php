<?php
/**
 * Plugin Name:       Real-time Event Trigger
 * Plugin URI:        https://github.com/rtet/rtet
 * Description:       Pushes WordPress events (posts published, users registered, your own) to open browsers within milliseconds, through the rtet relay. Uses the rtet PHP extension when loaded, plain HTTP otherwise.
 * Version:           0.1.0
 * Requires at least: 6.1
 * Requires PHP:      8.1
 * Author:            rtet contributors
 * License:           GPL-2.0-or-later
 * License URI:       https://www.gnu.org/licenses/gpl-2.0.html
 * Text Domain:       real-time-event-trigger
 * Domain Path:       /languages
 *
 * @package real-time-event-trigger
 */

// Loaded outside WordPress: nothing to do.
if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

// Another copy of the plugin is already loaded (e.g. as a must-use plugin): keep that one.
if ( defined( 'RTET_PLUGIN_VERSION' ) ) {
	return;
}

define( 'RTET_PLUGIN_VERSION', '0.1.0' );
define( 'RTET_PLUGIN_FILE', __FILE__ );
define( 'RTET_PLUGIN_DIR', __DIR__ );

// PHP too old for this plugin: do nothing rather than fatal.
if ( version_compare( PHP_VERSION, '8.1', '<' ) ) {
	return;
}

// Each class is read from its file the first time a request uses it: most
// requests run only a few of the plugin's hooks, and a class never used costs
// nothing. `RTET_Foo_Bar` lives in includes/class-rtet-foo-bar.php.
spl_autoload_register(
	static function ( $class_name ) {
		if ( 0 === strncmp( $class_name, 'RTET_', 5 ) ) {
			$file = __DIR__ . '/includes/class-' . strtolower( str_replace( '_', '-', $class_name ) ) . '.php';
			if ( is_file( $file ) ) {
				require $file;
			}
		}
	}
);
require_once __DIR__ . '/includes/functions.php';

RTET_Plugin::instance()->register_hooks();
