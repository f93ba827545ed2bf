<?php
/**
 * The "Real-time Events" admin page: settings (Settings API), a status box,
 * and a "Send test event" button whose event shows up live on the page.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The settings page.
 */
class RTET_Admin {

	/** Menu slug. */
	const SLUG = 'real-time-events';

	/** Capability needed to see and change the settings. */
	const CAPABILITY = 'manage_options';

	/**
	 * `admin_menu`.
	 */
	public static function add_menu() {
		add_menu_page(
			__( 'Real-time Events', 'real-time-event-trigger' ),
			__( 'Real-time Events', 'real-time-event-trigger' ),
			self::CAPABILITY,
			self::SLUG,
			array( __CLASS__, 'render_page' ),
			'dashicons-controls-play',
			81
		);
	}

	/**
	 * `plugin_action_links_*`: a "Settings" link on the Plugins screen.
	 *
	 * @param string[] $links Links.
	 * @return string[]
	 */
	public static function action_links( $links ) {
		array_unshift(
			$links,
			sprintf( '<a href="%s">%s</a>', esc_url( admin_url( 'admin.php?page=' . self::SLUG ) ), esc_html__( 'Settings', 'real-time-event-trigger' ) )
		);
		return $links;
	}

	/**
	 * `admin_init`: the setting, its sections and fields.
	 */
	public static function register_settings() {
		register_setting(
			RTET_Settings::GROUP,
			RTET_Settings::OPTION,
			array(
				'type'              => 'array',
				'sanitize_callback' => array( 'RTET_Settings', 'sanitize' ),
				'default'           => RTET_Settings::defaults(),
				'show_in_rest'      => false,
			)
		);

		add_settings_section( 'rtet_relay', __( 'Relay', 'real-time-event-trigger' ), array( __CLASS__, 'section_relay' ), self::SLUG );
		add_settings_field( 'rtet_websocket_server_url', __( 'Relay URL (server)', 'real-time-event-trigger' ), array( __CLASS__, 'field_server_url' ), self::SLUG, 'rtet_relay', array( 'label_for' => 'rtet_websocket_server_url' ) );
		add_settings_field( 'rtet_public_url', __( 'Relay URL (browsers)', 'real-time-event-trigger' ), array( __CLASS__, 'field_public_url' ), self::SLUG, 'rtet_relay', array( 'label_for' => 'rtet_public_url' ) );
		add_settings_field( 'rtet_api_key', __( 'API key', 'real-time-event-trigger' ), array( __CLASS__, 'field_api_key' ), self::SLUG, 'rtet_relay', array( 'label_for' => 'rtet_api_key' ) );

		add_settings_section( 'rtet_events', __( 'Events', 'real-time-event-trigger' ), '__return_false', self::SLUG );
		add_settings_field( 'rtet_builtin_events', __( 'Built-in events', 'real-time-event-trigger' ), array( __CLASS__, 'field_events' ), self::SLUG, 'rtet_events' );
		add_settings_field( 'rtet_display', __( 'Display', 'real-time-event-trigger' ), array( __CLASS__, 'field_display' ), self::SLUG, 'rtet_events' );
	}

	/**
	 * `admin_enqueue_scripts`: the page's own script, on this page only.
	 *
	 * @param string $hook_suffix Current admin page.
	 */
	public static function enqueue( $hook_suffix ) {
		if ( 'toplevel_page_' . self::SLUG !== $hook_suffix ) {
			return;
		}
		wp_enqueue_script( 'rtet-admin', plugins_url( 'assets/js/rtet-admin.js', RTET_PLUGIN_FILE ), array(), RTET_PLUGIN_VERSION, true );
		wp_add_inline_script(
			'rtet-admin',
			'window.rtetAdmin = ' . wp_json_encode(
				array(
					'testUrl' => esc_url_raw( rest_url( RTET_REST::NS . '/test' ) ),
					'nonce'   => wp_create_nonce( 'wp_rest' ),
					'wait'    => array(
						'request' => 15000,
						'echo'    => 10000,
					),
					'i18n'    => array(
						'generated' => __( 'New key generated. Copy it into the relay\'s configuration, then save. It will not be shown again.', 'real-time-event-trigger' ),
						'sending'   => __( 'Sending a test event…', 'real-time-event-trigger' ),
						/* translators: 1: event id, 2: transport */
						'delivered' => __( 'The relay took test event %1$s (%2$s). Waiting for it to come back live on this page…', 'real-time-event-trigger' ),
						/* translators: 1: event id, 2: why it was not delivered */
						'queued'    => __( 'The relay did not answer; test event %1$s waits and will be sent again: %2$s', 'real-time-event-trigger' ),
						/* translators: %s: event id */
						'received'  => __( 'Received test event %s live on this page.', 'real-time-event-trigger' ),
						/* translators: 1: event id, 2: seconds */
						'notSeen'   => __( 'Test event %1$s did not come back to this page within %2$s seconds: is this page connected to the relay (Relay URL for browsers)?', 'real-time-event-trigger' ),
						/* translators: %s: error message */
						'failed'    => __( 'The test event was not sent: %s', 'real-time-event-trigger' ),
						/* translators: %s: seconds */
						'timeout'   => __( 'The site did not answer within %s seconds.', 'real-time-event-trigger' ),
					),
				)
			) . ';',
			'before'
		);
	}

	/**
	 * Section intro.
	 */
	public static function section_relay() {
		echo '<p>' . esc_html__( 'Where the rtet relay runs, and the key it shares with this site. The key signs visitors\' tokens and authenticates publishing; it never reaches a browser.', 'real-time-event-trigger' ) . '</p>';
	}

	/**
	 * Field: relay URL for the server.
	 */
	public static function field_server_url() {
		printf(
			'<input type="url" class="regular-text code" id="rtet_websocket_server_url" name="%1$s[websocket_server_url]" value="%2$s" placeholder="ws://127.0.0.1:8090" />',
			esc_attr( RTET_Settings::OPTION ),
			esc_attr( RTET_Settings::server_url() )
		);
		echo '<p class="description">' . esc_html__( 'ws:// or wss:// URL at which this server reaches the relay.', 'real-time-event-trigger' ) . '</p>';
	}

	/**
	 * Field: relay URL for browsers.
	 */
	public static function field_public_url() {
		printf(
			'<input type="url" class="regular-text code" id="rtet_public_url" name="%1$s[public_url]" value="%2$s" placeholder="wss://example.com/rtet" />',
			esc_attr( RTET_Settings::OPTION ),
			esc_attr( (string) RTET_Settings::value( 'public_url' ) )
		);
		echo '<p class="description">' . esc_html__( 'ws:// or wss:// URL at which visitors\' browsers reach the relay. Leave empty to use the server URL.', 'real-time-event-trigger' ) . '</p>';
	}

	/**
	 * Field: API key (never printed back).
	 */
	public static function field_api_key() {
		$has_key = '' !== (string) RTET_Settings::value( 'api_key' );
		printf(
			'<input type="password" class="regular-text code" id="rtet_api_key" name="%1$s[api_key]" value="" autocomplete="new-password" spellcheck="false" placeholder="%2$s" aria-describedby="rtet_api_key_description" /> ',
			esc_attr( RTET_Settings::OPTION ),
			esc_attr( $has_key ? __( '(unchanged)', 'real-time-event-trigger' ) : '' )
		);
		echo '<button type="button" class="button" id="rtet_generate_key">' . esc_html__( 'Generate key', 'real-time-event-trigger' ) . '</button>';
		echo '<p class="description" id="rtet_api_key_description">';
		if ( $has_key ) {
			esc_html_e( 'A key is stored; it is not shown. Leave the field blank to keep it.', 'real-time-event-trigger' );
		} else {
			esc_html_e( 'No key is stored yet. Use the relay\'s key, or generate one and give it to the relay.', 'real-time-event-trigger' );
		}
		echo '</p><p id="rtet_generate_note" class="description" aria-live="polite"></p>';
		printf( '<input type="hidden" name="%s[_form]" value="1" />', esc_attr( RTET_Settings::OPTION ) );
	}

	/**
	 * Field: which built-in events to send.
	 */
	public static function field_events() {
		$labels = array(
			'post_published'   => __( 'post_published: a post first goes public (to everyone)', 'real-time-event-trigger' ),
			'post_updated'     => __( 'post_updated: a public post is edited (to everyone)', 'real-time-event-trigger' ),
			'user_registered'  => __( 'user_registered: a user signs up (to administrators only)', 'real-time-event-trigger' ),
			'comment_approved' => __( 'comment_approved: a comment is approved (to readers of that post: a notification and the comment count)', 'real-time-event-trigger' ),
			'comment_held'     => __( 'comment_held: a comment waits for moderation (to users who can moderate comments)', 'real-time-event-trigger' ),
			'post_saved'       => __( 'post_saved: a post is saved (to others editing it in the block editor: a notice before they overwrite it)', 'real-time-event-trigger' ),
		);
		echo '<fieldset>';
		foreach ( $labels as $event => $label ) {
			printf(
				'<label><input type="checkbox" name="%1$s[events][]" value="%2$s" %3$s /> %4$s</label><br />',
				esc_attr( RTET_Settings::OPTION ),
				esc_attr( $event ),
				checked( RTET_Settings::event_enabled( $event ), true, false ),
				esc_html( $label )
			);
		}
		echo '</fieldset>';
	}

	/**
	 * Field: toasts and notices.
	 */
	public static function field_display() {
		echo '<fieldset>';
		printf(
			'<label><input type="checkbox" name="%1$s[toasts]" value="1" %2$s /> %3$s</label><br />',
			esc_attr( RTET_Settings::OPTION ),
			checked( (bool) RTET_Settings::value( 'toasts' ), true, false ),
			esc_html__( 'Show a notification on the site when a post is published or a comment approved', 'real-time-event-trigger' )
		);
		printf(
			'<label><input type="checkbox" name="%1$s[admin_notices]" value="1" %2$s /> %3$s</label>',
			esc_attr( RTET_Settings::OPTION ),
			checked( (bool) RTET_Settings::value( 'admin_notices' ), true, false ),
			esc_html__( 'Show notices in wp-admin: a new user to administrators, a comment waiting for moderation to moderators', 'real-time-event-trigger' )
		);
		printf(
			'<br /><label><input type="checkbox" name="%1$s[readers_badge]" value="1" %2$s /> %3$s</label>',
			esc_attr( RTET_Settings::OPTION ),
			checked( (bool) RTET_Settings::value( 'readers_badge' ), true, false ),
			esc_html__( 'Show how many people are reading a public post ("3 people reading"): a count only, never who', 'real-time-event-trigger' )
		);
		echo '</fieldset>';
	}

	/**
	 * The page.
	 */
	public static function render_page() {
		if ( ! current_user_can( self::CAPABILITY ) ) {
			wp_die( esc_html__( 'Sorry, you are not allowed to manage these settings.', 'real-time-event-trigger' ) );
		}
		echo '<div class="wrap">';
		echo '<h1>' . esc_html( get_admin_page_title() ) . '</h1>';
		settings_errors();
		echo '<div id="rtet-status" class="card" style="max-width:none">';
		self::render_status();
		echo '</div>';
		echo '<form action="' . esc_url( admin_url( 'options.php' ) ) . '" method="post">';
		settings_fields( RTET_Settings::GROUP );
		do_settings_sections( self::SLUG );
		submit_button();
		echo '</form></div>';
	}

	/**
	 * The status box, in words: connected or not and since when, events
	 * waiting, the last error and when it happened, and what to do about a
	 * problem. The raw figures are behind a "Details" toggle.
	 */
	private static function render_status() {
		echo '<h2>' . esc_html__( 'Status', 'real-time-event-trigger' ) . '</h2>';
		$configured = RTET_Settings::is_configured();
		$health     = $configured ? RTET_Status::check() : new WP_Error( 'rtet_not_configured', trim( (string) RTET_Settings::key_problem() ) );
		$state      = RTET_Status::state();
		$waiting    = RTET_Status::waiting();
		$failure    = RTET_Token::last_failure();

		if ( ! $configured ) {
			$summary = __( 'Not set up yet: no events are sent.', 'real-time-event-trigger' );
		} elseif ( true === $health && null === $failure ) {
			$summary = __( 'Working: events reach the relay and browsers can subscribe.', 'real-time-event-trigger' );
		} else {
			$summary = __( 'Something needs your attention: see below.', 'real-time-event-trigger' );
		}
		printf( '<p id="rtet-status-summary"><strong>%s</strong></p>', esc_html( $summary ) );

		echo '<table class="widefat striped" style="max-width:60em"><tbody>';
		if ( RTET_Sender::extension_available() ) {
			$transport = sprintf(
				/* translators: %s: extension version */
				__( 'rtet extension %s loaded: events go through a pooled connection to the relay.', 'real-time-event-trigger' ),
				function_exists( 'rtet_version' ) ? rtet_version() : '?'
			);
		} else {
			$transport = __( 'HTTP fallback: the rtet extension is not loaded, so each event is posted to the relay\'s /api/send-event at the end of the request. Install rtet.so for pooled, non-blocking sending.', 'real-time-event-trigger' );
		}
		self::status_row( __( 'Transport', 'real-time-event-trigger' ), $transport, 'rtet-status-transport' );

		if ( true === $health ) {
			$relay = $state['since'] > 0
				/* translators: 1: relay URL, 2: since when */
				? sprintf( __( 'Reachable at %1$s, connected since %2$s.', 'real-time-event-trigger' ), RTET_Settings::server_url(), RTET_Status::when( $state['since'] ) )
				/* translators: %s: relay URL */
				: sprintf( __( 'Reachable at %s.', 'real-time-event-trigger' ), RTET_Settings::server_url() );
		} else {
			$relay = sprintf(
				/* translators: 1: error message, 2: since when, 3: what to do */
				__( 'Not reachable: %1$s (since %2$s). What to do: %3$s', 'real-time-event-trigger' ),
				$health->get_error_message(),
				$state['since'] > 0 && false === $state['up'] ? RTET_Status::when( $state['since'] ) : __( 'now', 'real-time-event-trigger' ),
				RTET_Status::advice( $health->get_error_message() )
			);
		}
		self::status_row( __( 'Relay', 'real-time-event-trigger' ), $relay, 'rtet-status-relay' );

		if ( 0 === $waiting['count'] ) {
			$pending = __( 'None: every event was delivered.', 'real-time-event-trigger' );
		} else {
			$pending = sprintf(
				/* translators: %d: number of events */
				_n( '%d event waits to be delivered.', '%d events wait to be delivered.', $waiting['count'], 'real-time-event-trigger' ),
				$waiting['count']
			) . ' ' . ( 'queue' === $waiting['where']
				? __( 'They are sent again with the next event and by WP-Cron every minute, and dropped after 10 minutes.', 'real-time-event-trigger' )
				: __( '(In this PHP worker; the extension sends them once the relay answers.)', 'real-time-event-trigger' ) );
		}
		self::status_row( __( 'Events waiting', 'real-time-event-trigger' ), $pending, 'rtet-status-pending' );

		if ( '' === $state['error'] ) {
			$error = __( 'None so far.', 'real-time-event-trigger' );
		} elseif ( true !== $health && $health->get_error_message() === $state['error'] ) {
			/* translators: %s: when */
			$error = sprintf( __( 'The relay problem above, first seen %s.', 'real-time-event-trigger' ), RTET_Status::when( $state['error_at'] ) );
		} else {
			$error = sprintf(
				/* translators: 1: error message, 2: when, 3: what to do */
				__( '%1$s — %2$s. What to do: %3$s', 'real-time-event-trigger' ),
				$state['error'],
				RTET_Status::when( $state['error_at'] ),
				RTET_Status::advice( $state['error'] )
			);
			if ( true === $health && $state['up'] && $state['since'] >= $state['error_at'] ) {
				$error .= ' ' . __( 'The relay has answered since.', 'real-time-event-trigger' );
			}
		}
		self::status_row( __( 'Last error', 'real-time-event-trigger' ), $error, 'rtet-status-error' );

		if ( null !== $failure ) {
			self::status_row( __( 'Browser tokens', 'real-time-event-trigger' ), RTET_Health::signing_failure_text( $failure ), 'rtet-status-tokens' );
		}
		/**
		 * Fires at the end of the status table (print one <tr> per row), for features that add their own status.
		 */
		do_action( 'rtet_status_rows' );
		echo '</tbody></table>';

		echo '<details id="rtet-status-details" style="margin-top:1em"><summary>' . esc_html__( 'Details', 'real-time-event-trigger' ) . '</summary><table class="widefat striped" style="max-width:60em"><tbody>';
		foreach ( self::raw_figures( $state, $waiting ) as $name => $value ) {
			self::status_row( $name, $value, 'rtet-status-raw-' . sanitize_key( $name ) );
		}
		echo '</tbody></table></details>';

		if ( $configured ) {
			echo '<p><button type="button" class="button button-secondary" id="rtet_send_test">' . esc_html__( 'Send test event', 'real-time-event-trigger' ) . '</button></p>';
			echo '<ul id="rtet_test_log" aria-live="polite"></ul>';
		}
	}

	/**
	 * The figures behind the status: the stored state, the queue, the extension's stats for this worker.
	 *
	 * @param array $state   RTET_Status::state().
	 * @param array $waiting RTET_Status::waiting().
	 * @return string[] Name => value as text.
	 */
	private static function raw_figures( array $state, array $waiting ) {
		$figures = array(
			'transport'     => RTET_Sender::transport(),
			'relay_url'     => RTET_Settings::server_url(),
			'browser_url'   => RTET_Settings::browser_url(),
			'relay_up'      => null === $state['up'] ? 'unknown' : ( $state['up'] ? 'true' : 'false' ),
			'relay_since'   => $state['since'] ? gmdate( 'c', $state['since'] ) : '',
			'last_error'    => $state['error'],
			'last_error_at' => $state['error_at'] ? gmdate( 'c', $state['error_at'] ) : '',
			'waiting'       => (string) $waiting['count'],
			'waiting_where' => $waiting['where'],
		);
		if ( RTET_Sender::extension_available() && function_exists( 'rtet_stats' ) ) {
			foreach ( (array) rtet_stats() as $name => $value ) {
				$figures[ 'extension.' . $name ] = is_scalar( $value ) || null === $value ? var_export( $value, true ) : (string) wp_json_encode( $value ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_var_export
			}
		}
		return $figures;
	}

	/**
	 * One row of the status table.
	 *
	 * @param string $label Label.
	 * @param string $value Text.
	 * @param string $id    Row id.
	 */
	private static function status_row( $label, $value, $id ) {
		printf( '<tr id="%1$s"><th scope="row" style="width:14em">%2$s</th><td>%3$s</td></tr>', esc_attr( $id ), esc_html( $label ), esc_html( $value ) );
	}
}
