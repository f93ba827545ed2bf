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

require_once __DIR__ . '/includes/class-rtet-protocol.php';
require_once __DIR__ . '/includes/class-rtet-settings.php';
require_once __DIR__ . '/includes/class-rtet-token.php';
require_once __DIR__ . '/includes/class-rtet-channels.php';
require_once __DIR__ . '/includes/class-rtet-queue.php';
require_once __DIR__ . '/includes/class-rtet-sender.php';
require_once __DIR__ . '/includes/class-rtet-events.php';
require_once __DIR__ . '/includes/class-rtet-comments.php';
require_once __DIR__ . '/includes/class-rtet-editor.php';
require_once __DIR__ . '/includes/class-rtet-rest.php';
require_once __DIR__ . '/includes/class-rtet-client.php';
require_once __DIR__ . '/includes/class-rtet-status.php';
require_once __DIR__ . '/includes/class-rtet-health.php';
require_once __DIR__ . '/includes/class-rtet-admin.php';
require_once __DIR__ . '/includes/class-rtet-plugin.php';
require_once __DIR__ . '/includes/functions.php';

RTET_Plugin::instance()->register_hooks();
