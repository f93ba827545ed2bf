<?php
/**
 * The plugin's settings: one option, `rtet_settings`, an array.
 *
 * It keeps the two keys of the original blog recipe (`websocket_server_url`,
 * `api_key`) so a site that followed the recipe keeps its settings, and adds
 * new keys beside them.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Reads, defaults and sanitizes `rtet_settings`.
 */
class RTET_Settings {

	/** The option name. */
	const OPTION = 'rtet_settings';

	/** The Settings API group (used by options.php). */
	const GROUP = 'rtet_settings_group';

	/** Built-in events that can be switched on and off. */
	const BUILT_IN_EVENTS = array( 'post_published', 'post_updated', 'user_registered', 'comment_approved', 'comment_held', 'post_saved' );

	/** The built-in events of plugin versions before comments and editor saves (RTET_Plugin::upgrade()). */
	const FIRST_EVENTS = array( 'post_published', 'post_updated', 'user_registered' );

	/** Settings format; RTET_Plugin::upgrade() brings older stored settings to it. */
	const VERSION = 2;

	/**
	 * Defaults for every key.
	 *
	 * @return array
	 */
	public static function defaults() {
		return array(
			// The relay as the server reaches it (recipe key), e.g. ws://127.0.0.1:8090.
			'websocket_server_url' => '',
			// The key that signs browser tokens and authenticates publishing (recipe key). Never sent to a browser.
			'api_key'              => '',
			// The relay as browsers reach it, e.g. wss://example.com/rtet; empty: the server URL.
			'public_url'           => '',
			// Which built-in events to send.
			'events'               => self::BUILT_IN_EVENTS,
			// Toasts for post_published on the front end.
			'toasts'               => true,
			// Notices in wp-admin: user_registered to administrators, comment_held to moderators.
			'admin_notices'        => true,
			// "N people reading" on a public post: counts from the relay's presence, never who.
			'readers_badge'        => false,
			// The format of these settings.
			'version'              => self::VERSION,
		);
	}

	/**
	 * The settings of this request, read once: get_option() unserializes the
	 * stored array on every call, and sending one event asks for a setting
	 * about five times. forget() drops it when the option changes.
	 *
	 * @var array|null
	 */
	private static $read = null;

	/**
	 * The settings, with defaults for missing keys.
	 *
	 * @return array
	 */
	public static function get() {
		if ( null === self::$read ) {
			$stored     = get_option( self::OPTION, array() );
			self::$read = array_merge( self::defaults(), is_array( $stored ) ? $stored : array() );
		}
		return self::$read;
	}

	/**
	 * The option was added, changed or deleted, or another site of a network
	 * is current: the next get() reads it again.
	 */
	public static function forget() {
		self::$read = null;
	}

	/**
	 * One setting.
	 *
	 * @param string $key Setting key.
	 * @return mixed
	 */
	public static function value( $key ) {
		$all = self::get();
		return $all[ $key ] ?? null;
	}

	/**
	 * The relay URL the server publishes to.
	 *
	 * @return string
	 */
	public static function server_url() {
		return (string) self::value( 'websocket_server_url' );
	}

	/**
	 * The relay URL browsers connect to (the public URL, else the server URL), with `/ws`.
	 *
	 * @return string
	 */
	public static function browser_url() {
		$url = (string) self::value( 'public_url' );
		if ( '' === $url ) {
			$url = self::server_url();
		}
		return '' === $url ? '' : self::with_path( $url, '/ws' );
	}

	/**
	 * Whether the plugin has what it needs to send (a relay URL and a key).
	 *
	 * @return bool
	 */
	public static function is_configured() {
		return '' !== self::server_url() && null === self::key_problem();
	}

	/**
	 * Why the stored API key cannot be used (missing, too short, a placeholder), or null.
	 *
	 * @return string|null
	 */
	public static function key_problem() {
		$key = (string) self::value( 'api_key' );
		if ( '' === $key ) {
			return __( 'No API key is set.', 'real-time-event-trigger' );
		}
		return RTET_Protocol::key_problem( $key );
	}

	/**
	 * Brings stored settings of an older format up to this one: a site that
	 * had every built-in event of its version on gets the new ones on too;
	 * a site that had switched some off gets the new ones off, to switch on
	 * in the settings page.
	 */
	public static function upgrade() {
		$stored = get_option( self::OPTION, null );
		if ( ! is_array( $stored ) || (int) ( $stored['version'] ?? 1 ) >= self::VERSION ) {
			return;
		}
		$events = isset( $stored['events'] ) ? array_map( 'strval', (array) $stored['events'] ) : self::BUILT_IN_EVENTS;
		if ( array() === array_diff( self::FIRST_EVENTS, $events ) ) {
			$events = array_values( array_unique( array_merge( $events, self::BUILT_IN_EVENTS ) ) );
		}
		$stored['events']  = array_values( array_intersect( self::BUILT_IN_EVENTS, $events ) );
		$stored['version'] = self::VERSION;
		update_option( self::OPTION, $stored );
	}

	/**
	 * Whether a built-in event is switched on.
	 *
	 * @param string $event Event name.
	 * @return bool
	 */
	public static function event_enabled( $event ) {
		return in_array( $event, (array) self::value( 'events' ), true );
	}

	/**
	 * A relay URL with its endpoint path (see RTET_Protocol::with_path()).
	 *
	 * @param string $url  Relay base URL.
	 * @param string $path Endpoint path, with its leading slash.
	 * @return string
	 */
	public static function with_path( $url, $path ) {
		return RTET_Protocol::with_path( $url, $path );
	}

	/**
	 * The relay's HTTP base for a ws:// or wss:// URL (see RTET_Protocol::http_base()).
	 *
	 * @param string $url Relay URL.
	 * @return string
	 */
	public static function http_base( $url ) {
		return RTET_Protocol::http_base( $url );
	}

	/**
	 * Sanitize callback of register_setting(): accepts only relay URLs
	 * (RTET_Protocol::parse_relay_url()) and reports errors with add_settings_error(), keeping the old value
	 * of a rejected field. A blank API key keeps the stored key.
	 *
	 * @param mixed $input Submitted value.
	 * @return array
	 */
	public static function sanitize( $input ) {
		$old = self::get();
		if ( ! is_array( $input ) ) {
			return $old;
		}
		$out = $old;

		foreach ( array( 'websocket_server_url', 'public_url' ) as $key ) {
			if ( ! array_key_exists( $key, $input ) ) {
				continue;
			}
			$url = trim( (string) $input[ $key ] );
			if ( '' === $url && 'public_url' === $key ) {
				$out[ $key ] = '';
			} elseif ( RTET_Protocol::is_relay_url( $url ) ) {
				// Stored as typed: RTET_Protocol's strict check leaves nothing to escape.
				$out[ $key ] = $url;
			} else {
				// settings_errors() prints messages as HTML: the submitted value is escaped here.
				add_settings_error(
					self::OPTION,
					'rtet_invalid_' . $key,
					sprintf(
						/* translators: 1: field label, 2: the rejected value */
						esc_html__( '%1$s must be a ws:// or wss:// URL (http:// and https:// are read as ws:// and wss://) with a host and without a query; "%2$s" is not. The previous value was kept.', 'real-time-event-trigger' ),
						'websocket_server_url' === $key ? esc_html__( 'Relay URL (server)', 'real-time-event-trigger' ) : esc_html__( 'Relay URL (browsers)', 'real-time-event-trigger' ),
						esc_html( $url )
					),
					'error'
				);
			}
		}

		if ( isset( $input['api_key'] ) ) {
			$key = trim( (string) $input['api_key'] );
			if ( '' === $key ) {
				// Left blank: the stored key stays.
				$out['api_key'] = $old['api_key'];
			} elseif ( null !== RTET_Protocol::key_problem( $key ) ) {
				add_settings_error(
					self::OPTION,
					'rtet_invalid_api_key',
					esc_html( RTET_Protocol::key_problem( $key ) . ' ' . __( 'The previous key was kept.', 'real-time-event-trigger' ) ),
					'error'
				);
			} else {
				$out['api_key'] = $key;
			}
		}

		// Checkboxes: present in the form means "submitted"; the hidden marker tells a form post from a partial update.
		if ( isset( $input['_form'] ) || array_key_exists( 'events', $input ) ) {
			$events        = isset( $input['events'] ) ? array_map( 'strval', (array) $input['events'] ) : array();
			$out['events'] = array_values( array_intersect( self::BUILT_IN_EVENTS, $events ) );
		}
		foreach ( array( 'toasts', 'admin_notices', 'readers_badge' ) as $flag ) {
			if ( isset( $input['_form'] ) || array_key_exists( $flag, $input ) ) {
				$out[ $flag ] = ! empty( $input[ $flag ] );
			}
		}

		unset( $out['_form'] );
		return $out;
	}
}
