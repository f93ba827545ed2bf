<?php
/**
 * Sends events to the relay: through the rtet extension when it is loaded,
 * otherwise over HTTP (`POST /api/send-event`).
 *
 * The extension queues and returns at once; a background sender in the
 * php-fpm worker keeps one pooled connection to the relay. The HTTP fallback
 * queues events during the request and posts them at `shutdown`, after
 * fastcgi_finish_request() where available, so the visitor never waits on the
 * relay. Events the relay did not take (down, overloaded) are kept in the
 * `rtet_pending_events` option for a while and sent again with the next
 * event or by WP-Cron; the relay's (channel, id) dedupe makes resends safe.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The transport.
 */
class RTET_Sender {

	/** Option holding events the HTTP fallback could not deliver yet. */
	const PENDING_OPTION = 'rtet_pending_events';

	/** How many undelivered events the fallback keeps. */
	const PENDING_MAX = 200;

	/** How long the fallback keeps an undelivered event, in seconds (the relay's history window). */
	const PENDING_TTL = 600;

	/** Transient set while the relay is slow to fail (timeouts): sending is not tried meanwhile. */
	const SLOW_TRANSIENT = 'rtet_relay_slow';

	/** How long to stop trying after a slow failure, in seconds. */
	const SLOW_BACKOFF = 15;

	/** WP-Cron hook that retries undelivered events. */
	const RETRY_HOOK = 'rtet_retry_pending';

	/**
	 * Events queued by this request for the HTTP fallback.
	 *
	 * @var array[]
	 */
	private static $queue = array();

	/**
	 * The (URL, key) the extension was configured with in this request.
	 *
	 * @var string|null
	 */
	private static $configured = null;

	/**
	 * Whether the rtet extension is loaded (filterable, e.g. to force the fallback).
	 *
	 * @return bool
	 */
	public static function extension_available() {
		/**
		 * Filters whether the plugin uses the rtet extension.
		 *
		 * @param bool $use True when the extension is loaded.
		 */
		return (bool) apply_filters( 'rtet_use_extension', extension_loaded( 'rtet' ) && function_exists( 'rtet_send_event' ) );
	}

	/**
	 * The transport in use: 'extension' or 'http'.
	 *
	 * @return string
	 */
	public static function transport() {
		return self::extension_available() ? 'extension' : 'http';
	}

	/**
	 * Points the extension at the configured relay (once per request and settings).
	 */
	public static function configure_extension() {
		$url = RTET_Settings::server_url();
		$key = (string) RTET_Settings::value( 'api_key' );
		$sig = $url . "\n" . $key;
		if ( self::$configured === $sig ) {
			return;
		}
		/**
		 * Filters the options passed to rtet_configure().
		 *
		 * @param array $options Extension options.
		 */
		rtet_configure( RTET_Settings::with_path( $url, '/publish' ), $key, (array) apply_filters( 'rtet_extension_options', array() ) );
		self::$configured = $sig;
	}

	/**
	 * A new event id: a UUIDv7 (time-ordered, random).
	 *
	 * @return string
	 */
	public static function new_id() {
		$ms    = (int) floor( microtime( true ) * 1000 );
		$bytes = pack( 'J', $ms );
		$bytes = substr( $bytes, 2 ) . random_bytes( 10 );
		// Version 7 and the RFC 4122 variant.
		$bytes[6] = chr( ( ord( $bytes[6] ) & 0x0f ) | 0x70 );
		$bytes[8] = chr( ( ord( $bytes[8] ) & 0x3f ) | 0x80 );
		$hex      = bin2hex( $bytes );
		return sprintf( '%s-%s-%s-%s-%s', substr( $hex, 0, 8 ), substr( $hex, 8, 4 ), substr( $hex, 12, 4 ), substr( $hex, 16, 4 ), substr( $hex, 20 ) );
	}

	/**
	 * Sends one event to one or more channels.
	 *
	 * @param string          $event    Event name.
	 * @param mixed           $data     JSON-encodable payload.
	 * @param string|string[] $channels Channels.
	 * @param array           $options  `id` (string), `blocking` (bool: HTTP fallback sends now and reports the result).
	 * @return string|WP_Error The event id, or why it was not sent.
	 */
	public static function send( $event, $data, $channels, array $options = array() ) {
		if ( ! RTET_Settings::is_configured() ) {
			return new WP_Error( 'rtet_not_configured', __( 'Real-time events are not configured: set the relay URL and API key.', 'real-time-event-trigger' ) );
		}
		$channels = array_values( array_unique( array_map( 'strval', (array) $channels ) ) );
		if ( ! preg_match( '/^[A-Za-z0-9_.:-]{1,64}$/', (string) $event ) ) {
			/* translators: %s: event name */
			return new WP_Error( 'rtet_invalid_event', sprintf( __( 'Invalid event name "%s".', 'real-time-event-trigger' ), $event ) );
		}
		if ( empty( $channels ) ) {
			return new WP_Error( 'rtet_no_channels', __( 'An event needs at least one channel.', 'real-time-event-trigger' ) );
		}
		foreach ( $channels as $channel ) {
			if ( ! preg_match( '/^[A-Za-z0-9_.:@-]{1,128}$/', $channel ) ) {
				/* translators: %s: channel name */
				return new WP_Error( 'rtet_invalid_channel', sprintf( __( 'Invalid channel name "%s".', 'real-time-event-trigger' ), $channel ) );
			}
		}
		$id = isset( $options['id'] ) ? (string) $options['id'] : self::new_id();

		if ( self::extension_available() ) {
			try {
				self::configure_extension();
				$id = rtet_send_event( $event, $data, $channels, array( 'id' => $id ) );
				return (string) $id;
			} catch ( Throwable $e ) {
				return new WP_Error( 'rtet_send_failed', $e->getMessage() );
			}
		}

		$body = wp_json_encode( $data );
		if ( false === $body ) {
			return new WP_Error( 'rtet_invalid_data', __( 'Event data cannot be encoded as JSON.', 'real-time-event-trigger' ) );
		}
		if ( strlen( $body ) > 65000 ) {
			return new WP_Error( 'rtet_too_large', __( 'Event data is larger than 64 KiB.', 'real-time-event-trigger' ) );
		}

		$item = array(
			'id'       => $id,
			'event'    => (string) $event,
			'data'     => $data,
			'channels' => $channels,
			'time'     => time(),
		);
		if ( ! empty( $options['blocking'] ) ) {
			$result = self::post( $item );
			if ( is_wp_error( $result ) ) {
				return $result;
			}
			return $id;
		}
		// Sent by flush_at_shutdown() (hooked to `shutdown` in RTET_Plugin).
		self::$queue[] = $item;
		return $id;
	}

	/**
	 * At shutdown, when this request queued events: let the visitor go
	 * (php-fpm's fastcgi_finish_request()), then post them.
	 */
	public static function flush_at_shutdown() {
		if ( empty( self::$queue ) ) {
			return;
		}
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			fastcgi_finish_request();
		}
		self::flush();
	}

	/**
	 * Posts every queued event (and earlier undelivered ones) now, oldest first.
	 *
	 * Stops at the first event the relay does not take: it and everything after
	 * it wait in the `rtet_pending_events` option, so one flush costs at most one
	 * timeout. When that failure was slow (a relay that accepts connections but
	 * does not answer), flushes in the next SLOW_BACKOFF seconds do not try at
	 * all; a refused connection costs nothing, so the next flush tries again.
	 *
	 * @param bool $force Try even during the back-off (WP-Cron's retry).
	 * @return int How many events are still undelivered.
	 */
	public static function flush( $force = false ) {
		$items       = self::$queue;
		self::$queue = array();
		$pending     = get_option( self::PENDING_OPTION, array() );
		if ( is_array( $pending ) && ! empty( $pending ) ) {
			delete_option( self::PENDING_OPTION );
			$items = array_merge( $pending, $items );
		}
		$items = array_values(
			array_filter(
				$items,
				static function ( $item ) {
					return is_array( $item ) && isset( $item['time'] ) && ( time() - (int) $item['time'] ) <= self::PENDING_TTL;
				}
			)
		);
		if ( empty( $items ) ) {
			return 0;
		}

		$failed = array();
		if ( ! $force && get_transient( self::SLOW_TRANSIENT ) ) {
			$failed = $items;
		} else {
			foreach ( $items as $i => $item ) {
				$started = microtime( true );
				$result  = self::post( $item );
				if ( is_wp_error( $result ) && 'rtet_retry' === $result->get_error_code() ) {
					if ( microtime( true ) - $started >= 0.5 ) {
						set_transient( self::SLOW_TRANSIENT, 1, self::SLOW_BACKOFF );
					}
					$failed = array_slice( $items, $i );
					break;
				}
			}
			if ( empty( $failed ) ) {
				delete_transient( self::SLOW_TRANSIENT );
			}
		}

		if ( ! empty( $failed ) ) {
			$failed = array_slice( $failed, -self::PENDING_MAX );
			update_option( self::PENDING_OPTION, $failed, false );
			if ( ! wp_next_scheduled( self::RETRY_HOOK ) ) {
				wp_schedule_single_event( time() + 60, self::RETRY_HOOK );
			}
		}
		return count( $failed );
	}

	/**
	 * Posts one event to each of its channels over HTTP.
	 *
	 * @param array $item Queued event.
	 * @return true|WP_Error WP_Error code `rtet_retry` when worth retrying.
	 */
	private static function post( array $item ) {
		$url = RTET_Settings::http_base( RTET_Settings::server_url() ) . '/api/send-event';
		/**
		 * Filters the HTTP fallback's timeout in seconds.
		 *
		 * @param float $timeout Seconds.
		 */
		$timeout = (float) apply_filters( 'rtet_http_timeout', 2.0 );
		$error   = null;
		foreach ( $item['channels'] as $channel ) {
			$response = wp_remote_post(
				$url,
				array(
					'timeout'     => $timeout,
					'redirection' => 0,
					'headers'     => array(
						'Content-Type'  => 'application/json',
						'Authorization' => 'Bearer ' . RTET_Settings::value( 'api_key' ),
					),
					'body'        => wp_json_encode(
						array(
							'type'    => $item['event'],
							'data'    => $item['data'],
							'channel' => $channel,
							'id'      => $item['id'],
						)
					),
				)
			);
			$code = is_wp_error( $response ) ? 0 : (int) wp_remote_retrieve_response_code( $response );
			if ( 200 === $code ) {
				continue;
			}
			$message = is_wp_error( $response ) ? $response->get_error_message() : wp_remote_retrieve_body( $response );
			$retry   = 0 === $code || 429 === $code || $code >= 500;
			$error   = new WP_Error(
				$retry ? 'rtet_retry' : 'rtet_rejected',
				/* translators: 1: HTTP status (0 when the relay did not answer), 2: message */
				sprintf( __( 'The relay did not take the event (HTTP %1$d): %2$s', 'real-time-event-trigger' ), $code, $message )
			);
			/**
			 * Fires when the HTTP fallback could not deliver an event to a channel.
			 *
			 * @param WP_Error $error   What went wrong.
			 * @param array    $item    The event (id, event, data, channels).
			 * @param string   $channel The channel.
			 */
			do_action( 'rtet_event_failed', $error, $item, $channel );
			if ( $retry ) {
				// The relay is down or busy: the rest of this event's channels wait with it.
				return $error;
			}
		}
		return $error ?? true;
	}

	/**
	 * WP-Cron: retry undelivered events.
	 */
	public static function retry_pending() {
		if ( ! self::extension_available() ) {
			self::flush( true );
		}
	}

	/**
	 * Is the relay reachable? Asks `/healthz` with a short timeout.
	 *
	 * @return true|WP_Error
	 */
	public static function relay_health() {
		$url = RTET_Settings::server_url();
		if ( '' === $url ) {
			return new WP_Error( 'rtet_not_configured', __( 'No relay URL is set.', 'real-time-event-trigger' ) );
		}
		$response = wp_remote_get( RTET_Settings::http_base( $url ) . '/healthz', array( 'timeout' => 2 ) );
		if ( is_wp_error( $response ) ) {
			return $response;
		}
		$code = (int) wp_remote_retrieve_response_code( $response );
		if ( 200 !== $code ) {
			/* translators: %d: HTTP status */
			return new WP_Error( 'rtet_unhealthy', sprintf( __( 'The relay answered HTTP %d.', 'real-time-event-trigger' ), $code ) );
		}
		return true;
	}
}
