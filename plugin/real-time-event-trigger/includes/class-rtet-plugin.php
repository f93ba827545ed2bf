<?php
/**
 * Wires the plugin into WordPress: every hook is registered here and only here.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The plugin.
 */
class RTET_Plugin {

	/**
	 * The instance.
	 *
	 * @var RTET_Plugin|null
	 */
	private static $instance = null;

	/**
	 * The one instance.
	 *
	 * @return RTET_Plugin
	 */
	public static function instance() {
		if ( null === self::$instance ) {
			self::$instance = new self();
		}
		return self::$instance;
	}

	/**
	 * The plugin's name for WordPress, e.g. `real-time-event-trigger/real-time-event-trigger.php`.
	 *
	 * @var string|null
	 */
	private static $basename = null;

	/**
	 * The plugin's name for WordPress (`plugin_basename()` of its main file).
	 *
	 * Worked out once per request: `plugin_basename()` normalises three paths
	 * and runs a regular expression, and the activation and deactivation
	 * hooks, the action links and the text domain all need it.
	 *
	 * @return string
	 */
	public static function basename() {
		if ( null === self::$basename ) {
			self::$basename = plugin_basename( RTET_PLUGIN_FILE );
		}
		return self::$basename;
	}

	/**
	 * Registers every hook of the plugin.
	 */
	public function register_hooks() {
		// What register_activation_hook() and register_deactivation_hook() do, with the name worked out once.
		add_action( 'activate_' . self::basename(), array( __CLASS__, 'activate' ) );
		add_action( 'deactivate_' . self::basename(), array( __CLASS__, 'deactivate' ) );

		add_action( 'init', array( __CLASS__, 'load_textdomain' ) );
		// The settings are read once per request, and again after they change.
		foreach ( array( 'add_option_', 'update_option_', 'delete_option_' ) as $change ) {
			add_action( $change . RTET_Settings::OPTION, array( 'RTET_Settings', 'forget' ) );
		}
		add_action( 'switch_blog', array( 'RTET_Settings', 'forget' ) );
		// An upgrade by replacing the files runs no activation hook: bring stored data up to date on load.
		add_action( 'plugins_loaded', array( __CLASS__, 'upgrade' ) );

		// Built-in events.
		add_action( 'wp_after_insert_post', array( 'RTET_Events', 'on_after_insert_post' ), 10, 4 );
		add_action( 'user_register', array( 'RTET_Events', 'on_user_register' ), 10, 1 );

		// Live comments: approved ones to the post's readers, held ones to moderators.
		add_action( 'wp_insert_comment', array( 'RTET_Comments', 'on_insert_comment' ), 10, 2 );
		add_action( 'transition_comment_status', array( 'RTET_Comments', 'on_transition_comment_status' ), 10, 3 );
		add_action( 'shutdown', array( 'RTET_Comments', 'send_changed' ), 10 );
		add_filter( 'render_block', array( 'RTET_Comments', 'mark_comments_title' ), 10, 2 );

		// Editor awareness: a save reaches the others editing the post.
		add_action( 'wp_after_insert_post', array( 'RTET_Editor', 'on_after_insert_post' ), 10, 4 );
		add_action( 'wp_insert_post', array( 'RTET_Editor', 'note_revision' ), 10, 2 );
		add_action( 'enqueue_block_editor_assets', array( 'RTET_Editor', 'enqueue' ) );

		// A save's events are worked out after the response (php-fpm), before the HTTP fallback posts what it holds.
		add_action( 'shutdown', array( 'RTET_Events', 'send_after_response' ), PHP_INT_MAX - 1 );
		// The HTTP fallback: events queued by a request go out after the response; undelivered ones are retried.
		add_action( 'shutdown', array( 'RTET_Sender', 'flush_at_shutdown' ), PHP_INT_MAX );
		add_action( RTET_Sender::RETRY_HOOK, array( 'RTET_Sender', 'retry_pending' ) );
		if ( wp_doing_cron() ) {
			// Only in WP-Cron's own runs, so other requests pay nothing for it.
			add_action( 'shutdown', array( 'RTET_Sender', 'replan_after_cron' ) );
		}

		// REST: tokens and the test event.
		add_action( 'rest_api_init', array( 'RTET_REST', 'register_routes' ) );

		// The browser client.
		add_action( 'wp_enqueue_scripts', array( 'RTET_Client', 'enqueue_front' ) );
		add_action( 'admin_enqueue_scripts', array( 'RTET_Client', 'enqueue_admin' ) );

		// The settings page.
		add_action( 'admin_menu', array( 'RTET_Admin', 'add_menu' ) );
		add_action( 'admin_init', array( 'RTET_Admin', 'register_settings' ) );
		add_action( 'admin_enqueue_scripts', array( 'RTET_Admin', 'enqueue' ) );
		add_filter( 'site_status_tests', array( 'RTET_Health', 'tests' ) );
		add_filter( 'debug_information', array( 'RTET_Health', 'info' ) );
		add_filter( 'plugin_action_links_' . self::basename(), array( 'RTET_Admin', 'action_links' ) );
	}

	/**
	 * Loads translations.
	 */
	public static function load_textdomain() {
		load_plugin_textdomain( 'real-time-event-trigger', false, dirname( self::basename() ) . '/languages' );
	}

	/**
	 * On activation: store defaults without touching existing (recipe) settings.
	 */
	public static function activate() {
		$stored = get_option( RTET_Settings::OPTION, null );
		if ( ! is_array( $stored ) ) {
			add_option( RTET_Settings::OPTION, RTET_Settings::defaults() );
		} else {
			update_option( RTET_Settings::OPTION, array_merge( RTET_Settings::defaults(), $stored ) );
		}
		RTET_Queue::install();
	}

	/**
	 * `plugins_loaded`: brings the database up to date after an upgrade (the
	 * retry queue's table, and events an older version left in its option).
	 * One autoloaded option read when nothing is to do.
	 */
	public static function upgrade() {
		RTET_Queue::install();
		RTET_Settings::upgrade();
	}

	/**
	 * On deactivation: stop the retry job (settings stay until uninstall).
	 */
	public static function deactivate() {
		wp_clear_scheduled_hook( RTET_Sender::RETRY_HOOK );
	}
}
