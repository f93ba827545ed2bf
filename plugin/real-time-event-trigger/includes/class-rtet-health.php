<?php
/**
 * Site Health (Tools → Site Health): tests of the link to the relay, and a
 * "Real-time Events" section in the Info tab. Neither ever shows the API key.
 *
 * Tests: the relay answers; the transport (rtet.so or the HTTP fallback);
 * the key's strength; `wss://` for browsers on an `https://` site; events
 * waiting in the fallback's queue; browser tokens can be signed.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Site Health tests and info.
 */
class RTET_Health {

	/** The badge every test carries. */
	const BADGE_COLOR = 'blue';

	/**
	 * `site_status_tests`.
	 *
	 * @param array $tests Tests.
	 * @return array
	 */
	public static function tests( $tests ) {
		$ours = array(
			'rtet_relay'         => __( 'Real-time events: the relay answers', 'real-time-event-trigger' ),
			'rtet_transport'     => __( 'Real-time events: how events are sent', 'real-time-event-trigger' ),
			'rtet_key'           => __( 'Real-time events: the API key', 'real-time-event-trigger' ),
			'rtet_secure_socket' => __( 'Real-time events: secure connections for browsers', 'real-time-event-trigger' ),
			'rtet_queue'         => __( 'Real-time events: events waiting', 'real-time-event-trigger' ),
			'rtet_token_signing' => __( 'Real-time events: browser tokens', 'real-time-event-trigger' ),
		);
		foreach ( $ours as $name => $label ) {
			$tests['direct'][ $name ] = array(
				'label' => $label,
				'test'  => array( __CLASS__, 'test_' . substr( $name, 5 ) ),
			);
		}
		return $tests;
	}

	/**
	 * One test result.
	 *
	 * @param string $test        Test name.
	 * @param string $status      'good', 'recommended' or 'critical'.
	 * @param string $label       Headline.
	 * @param string $description Text (escaped here).
	 * @return array
	 */
	private static function result( $test, $status, $label, $description ) {
		$colors = array(
			'good'        => self::BADGE_COLOR,
			'recommended' => 'orange',
			'critical'    => 'red',
		);
		return array(
			'label'       => $label,
			'status'      => $status,
			'badge'       => array(
				'label' => __( 'Real-time events', 'real-time-event-trigger' ),
				'color' => $colors[ $status ],
			),
			'description' => '<p>' . esc_html( $description ) . '</p>',
			'test'        => $test,
		);
	}

	/**
	 * Test: the relay answers `/healthz`.
	 *
	 * @return array
	 */
	public static function test_relay() {
		if ( ! RTET_Settings::is_configured() ) {
			return self::result( 'rtet_relay', 'critical', __( 'Real-time events are not configured', 'real-time-event-trigger' ), RTET_Status::advice( '' ) );
		}
		$health = RTET_Status::check();
		if ( true === $health ) {
			/* translators: %s: relay URL */
			return self::result( 'rtet_relay', 'good', __( 'The real-time relay answers', 'real-time-event-trigger' ), sprintf( __( 'The relay at %s answered its health check.', 'real-time-event-trigger' ), RTET_Settings::server_url() ) );
		}
		return self::result(
			'rtet_relay',
			'critical',
			__( 'The real-time relay does not answer', 'real-time-event-trigger' ),
			/* translators: 1: relay URL, 2: error, 3: what to do */
			sprintf( __( 'The relay at %1$s did not answer its health check: %2$s. %3$s', 'real-time-event-trigger' ), RTET_Settings::server_url(), $health->get_error_message(), RTET_Status::advice( $health->get_error_message() ) )
		);
	}

	/**
	 * Test: rtet.so loaded, or the HTTP fallback.
	 *
	 * @return array
	 */
	public static function test_transport() {
		if ( RTET_Sender::extension_available() ) {
			return self::result(
				'rtet_transport',
				'good',
				__( 'Real-time events go through the rtet extension', 'real-time-event-trigger' ),
				/* translators: %s: extension version */
				sprintf( __( 'rtet.so %s is loaded: each PHP worker keeps one connection to the relay, and sending never makes a visitor wait.', 'real-time-event-trigger' ), function_exists( 'rtet_version' ) ? rtet_version() : '?' )
			);
		}
		return self::result(
			'rtet_transport',
			'recommended',
			__( 'Real-time events use the HTTP fallback', 'real-time-event-trigger' ),
			__( 'The rtet PHP extension is not loaded, so each event is one HTTP request to the relay at the end of the request that made it. Install rtet.so (see the plugin\'s installation guide) for pooled, non-blocking sending.', 'real-time-event-trigger' )
		);
	}

	/**
	 * Test: the API key is long and random enough (RTET_Protocol's rules, the relay's).
	 *
	 * @return array
	 */
	public static function test_key() {
		$problem = RTET_Settings::key_problem();
		if ( null === $problem ) {
			return self::result( 'rtet_key', 'good', __( 'The real-time API key is strong', 'real-time-event-trigger' ), __( 'The API key is long enough and does not look like an example key.', 'real-time-event-trigger' ) );
		}
		return self::result( 'rtet_key', 'critical', __( 'The real-time API key is missing or weak', 'real-time-event-trigger' ), $problem . ' ' . __( 'Without a strong key no event is sent and no browser gets a token.', 'real-time-event-trigger' ) );
	}

	/**
	 * Test: an https:// site gives browsers a wss:// relay URL (browsers refuse ws:// from an https:// page).
	 *
	 * @return array
	 */
	public static function test_secure_socket() {
		$url   = RTET_Settings::browser_url();
		$https = 'https' === wp_parse_url( home_url(), PHP_URL_SCHEME );
		if ( $https && 0 === strpos( $url, 'ws://' ) ) {
			return self::result(
				'rtet_secure_socket',
				'critical',
				__( 'Browsers cannot reach the real-time relay from this https:// site', 'real-time-event-trigger' ),
				/* translators: %s: relay URL for browsers */
				sprintf( __( 'The relay URL for browsers is %s: browsers refuse unencrypted ws:// connections from https:// pages. Put the relay behind TLS (e.g. a reverse proxy) and set a wss:// URL for browsers.', 'real-time-event-trigger' ), $url )
			);
		}
		if ( ! $https ) {
			return self::result( 'rtet_secure_socket', 'good', __( 'Browsers can reach the real-time relay', 'real-time-event-trigger' ), __( 'This site is served over http://, so browsers may use a ws:// relay URL. Once the site moves to https://, the relay URL for browsers must be wss://.', 'real-time-event-trigger' ) );
		}
		return self::result( 'rtet_secure_socket', 'good', __( 'Browsers reach the real-time relay over TLS', 'real-time-event-trigger' ), __( 'The relay URL for browsers is wss://.', 'real-time-event-trigger' ) );
	}

	/**
	 * Test: events waiting in the HTTP fallback's queue.
	 *
	 * @return array
	 */
	public static function test_queue() {
		$waiting = RTET_Status::waiting();
		$count   = $waiting['count'];
		if ( 0 === $count ) {
			return self::result( 'rtet_queue', 'good', __( 'No real-time events are waiting', 'real-time-event-trigger' ), __( 'Every event was delivered to the relay.', 'real-time-event-trigger' ) );
		}
		$state = RTET_Status::state();
		$text  = sprintf(
			/* translators: %d: number of events */
			_n( '%d event waits to be delivered to the relay.', '%d events wait to be delivered to the relay.', $count, 'real-time-event-trigger' ),
			$count
		) . ' ' . ( 'queue' === $waiting['where']
			? __( 'They are sent again with the next event and by WP-Cron every minute, and dropped after 10 minutes.', 'real-time-event-trigger' )
			: __( 'The rtet extension of this PHP worker holds them and sends them once the relay answers.', 'real-time-event-trigger' ) );
		if ( '' !== $state['error'] ) {
			$text .= ' ' . RTET_Status::advice( $state['error'] );
		}
		$full = 'queue' === $waiting['where'] && $count >= RTET_Sender::PENDING_MAX;
		return self::result(
			'rtet_queue',
			$full ? 'critical' : 'recommended',
			$full ? __( 'Real-time events are being dropped: the queue is full', 'real-time-event-trigger' ) : __( 'Real-time events are waiting to be delivered', 'real-time-event-trigger' ),
			$text
		);
	}

	/**
	 * Test: critical while the last attempt to sign a browser token failed.
	 *
	 * @return array
	 */
	public static function test_token_signing() {
		$failure = RTET_Token::last_failure();
		if ( null === $failure ) {
			return self::result( 'rtet_token_signing', 'good', __( 'Browsers get tokens for real-time events', 'real-time-event-trigger' ), __( 'The token endpoint signs tokens the relay accepts.', 'real-time-event-trigger' ) );
		}
		return self::result( 'rtet_token_signing', 'critical', __( 'Browsers cannot get tokens for real-time events', 'real-time-event-trigger' ), self::signing_failure_text( $failure ) );
	}

	/**
	 * A signing failure as one sentence.
	 *
	 * @param array $failure From RTET_Token::last_failure().
	 * @return string
	 */
	public static function signing_failure_text( array $failure ) {
		return sprintf(
			/* translators: 1: date and time, 2: error message */
			__( 'Since %1$s the rtet extension refuses to sign browser tokens, so no browser can subscribe: %2$s', 'real-time-event-trigger' ),
			wp_date( 'Y-m-d H:i:s', (int) $failure['time'] ),
			$failure['message']
		);
	}

	/**
	 * `debug_information`: the "Real-time Events" section of Site Health's Info tab.
	 *
	 * @param array $info Sections.
	 * @return array
	 */
	public static function info( $info ) {
		$extension = RTET_Sender::extension_available();
		$waiting   = RTET_Status::waiting();
		$state     = RTET_Status::state();
		$fields    = array(
			'transport'         => array(
				'label' => __( 'Transport', 'real-time-event-trigger' ),
				'value' => $extension ? __( 'rtet extension', 'real-time-event-trigger' ) : __( 'HTTP fallback', 'real-time-event-trigger' ),
				'debug' => RTET_Sender::transport(),
			),
			'relay_url'         => array(
				'label' => __( 'Relay URL (server)', 'real-time-event-trigger' ),
				'value' => RTET_Settings::server_url(),
			),
			'browser_url'       => array(
				'label' => __( 'Relay URL (browsers)', 'real-time-event-trigger' ),
				'value' => RTET_Settings::browser_url(),
			),
			'api_key'           => array(
				'label'   => __( 'API key', 'real-time-event-trigger' ),
				'value'   => RTET_Settings::key_problem() ?? __( 'Set, strong (not shown)', 'real-time-event-trigger' ),
				'private' => true,
			),
			'plugin_version'    => array(
				'label' => __( 'Plugin version', 'real-time-event-trigger' ),
				'value' => RTET_PLUGIN_VERSION,
			),
			'extension_version' => array(
				'label' => __( 'Extension version', 'real-time-event-trigger' ),
				'value' => function_exists( 'rtet_version' ) ? rtet_version() : __( 'Not loaded', 'real-time-event-trigger' ),
			),
			'events'            => array(
				'label' => __( 'Built-in events on', 'real-time-event-trigger' ),
				'value' => implode( ', ', (array) RTET_Settings::value( 'events' ) ),
			),
			'waiting'           => array(
				'label' => 'queue' === $waiting['where'] ? __( 'Events waiting (HTTP fallback queue)', 'real-time-event-trigger' ) : __( 'Events waiting (this PHP worker)', 'real-time-event-trigger' ),
				'value' => $waiting['count'],
			),
			'last_error'        => array(
				'label' => __( 'Last relay error', 'real-time-event-trigger' ),
				'value' => '' === $state['error'] ? __( 'None', 'real-time-event-trigger' ) : $state['error'] . ' — ' . RTET_Status::when( $state['error_at'] ),
			),
		);
		if ( $extension && function_exists( 'rtet_stats' ) ) {
			foreach ( (array) rtet_stats() as $name => $value ) {
				$fields[ 'stats_' . $name ] = array(
					/* translators: %s: statistic name */
					'label' => sprintf( __( 'Extension (this worker): %s', 'real-time-event-trigger' ), $name ),
					'value' => is_scalar( $value ) ? ( is_bool( $value ) ? ( $value ? 'true' : 'false' ) : (string) $value ) : ( null === $value ? '—' : (string) wp_json_encode( $value ) ),
				);
			}
		}
		$info['real-time-event-trigger'] = array(
			'label'  => __( 'Real-time Events', 'real-time-event-trigger' ),
			'fields' => $fields,
		);
		return $info;
	}
}
