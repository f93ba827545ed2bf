<?php
/**
 * Sends events to the relay: through the rtet extension when it is loaded,
 * otherwise over HTTP (`POST /api/send-event`).
 *
 * The extension queues and returns at once; a background sender in the
 * php-fpm worker keeps one pooled connection to the relay. The HTTP fallback
 * queues events during the request and posts them at `shutdown`, after
 * fastcgi_finish_request() where available, so the visitor never waits on the
 * relay. Events the relay did not take (down, overloaded) wait in RTET_Queue
 * for a while and are sent again with the next event or by WP-Cron; the
 * relay's (channel, id) dedupe makes resends safe.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The transport.
 */
class RTET_Sender {

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
	 * A new event id in the extension's format: a ULID (26 characters of
	 * Crockford's base32: a 48-bit millisecond timestamp, then 80 random bits),
	 * so ids sort by time whichever transport made them.
	 *
	 * @return string
	 */
	public static function new_id() {
		$ms     = (int) floor( microtime( true ) * 1000 );
		$digits = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
		$time   = '';
		for ( $i = 0; $i < 10; $i++ ) {
			$time = $digits[ $ms % 32 ] . $time;
			$ms   = intdiv( $ms, 32 );
		}
		// 80 random bits: 16 digits of 5 bits, read from 10 bytes.
		$random = '';
		$bits   = 0;
		$count  = 0;
		foreach ( str_split( random_bytes( 10 ) ) as $byte ) {
			$bits   = ( $bits << 8 ) | ord( $byte );
			$count += 8;
			while ( $count >= 5 ) {
				$count  -= 5;
				$random .= $digits[ ( $bits >> $count ) & 31 ];
			}
			$bits &= ( 1 << $count ) - 1;
		}
		return $time . $random;
	}

	/**
	 * Sends one event to one or more channels.
	 *
	 * With the extension the extension makes the id (unless the caller gave
	 * one): its ids stay unique across forked workers.
	 *
	 * @param string          $event    Event name.
	 * @param mixed           $data     JSON-encodable payload.
	 * @param string|string[] $channels Channels.
	 * @param array           $options  `id` (string), `blocking` (bool: HTTP fallback sends now and reports the
	 *                                  result; an event the relay did not answer is queued, and the error `rtet_retry`
	 *                                  carries its `id`).
	 * @return string|WP_Error The event id, or why it was not sent.
	 */
	public static function send( $event, $data, $channels, array $options = array() ) {
		if ( ! RTET_Settings::is_configured() ) {
			return new WP_Error( 'rtet_not_configured', __( 'Real-time events are not configured: set the relay URL and API key.', 'real-time-event-trigger' ) );
		}
		$channels = array_values( array_unique( array_map( 'strval', (array) $channels ) ) );
		if ( ! RTET_Protocol::is_event( (string) $event ) ) {
			/* translators: %s: event name */
			return new WP_Error( 'rtet_invalid_event', sprintf( __( 'Invalid event name "%s".', 'real-time-event-trigger' ), $event ) );
		}
		if ( empty( $channels ) ) {
			return new WP_Error( 'rtet_no_channels', __( 'An event needs at least one channel.', 'real-time-event-trigger' ) );
		}
		foreach ( $channels as $channel ) {
			if ( ! RTET_Protocol::is_channel( $channel ) ) {
				/* translators: %s: channel name */
				return new WP_Error( 'rtet_invalid_channel', sprintf( __( 'Invalid channel name "%s".', 'real-time-event-trigger' ), $channel ) );
			}
		}
		if ( isset( $options['id'] ) && ! RTET_Protocol::is_id( (string) $options['id'] ) ) {
			/* translators: %s: event id */
			return new WP_Error( 'rtet_invalid_id', sprintf( __( 'Invalid event id "%s".', 'real-time-event-trigger' ), $options['id'] ) );
		}

		if ( self::extension_available() ) {
			try {
				self::configure_extension();
				$extension_options = isset( $options['id'] ) ? array( 'id' => (string) $options['id'] ) : array();
				return (string) rtet_send_event( $event, $data, $channels, $extension_options );
			} catch ( Throwable $e ) {
				return new WP_Error( 'rtet_send_failed', $e->getMessage() );
			}
		}

		$item = array(
			'id'       => isset( $options['id'] ) ? (string) $options['id'] : self::new_id(),
			'event'    => (string) $event,
			'data'     => $data,
			'channels' => $channels,
			'time'     => time(),
		);
		// The relay's limit applies to each HTTP body, which names one channel: check the longest.
		$longest = array_reduce(
			$channels,
			static function ( $a, $b ) {
				return strlen( $b ) > strlen( $a ) ? $b : $a;
			},
			''
		);
		$body    = self::body( $item, $longest );
		if ( false === $body ) {
			return new WP_Error( 'rtet_invalid_data', __( 'Event data cannot be encoded as JSON.', 'real-time-event-trigger' ) );
		}
		if ( strlen( $body ) > RTET_Protocol::MAX_FRAME_BYTES ) {
			/* translators: 1: size in bytes, 2: the limit in bytes */
			return new WP_Error( 'rtet_too_large', sprintf( __( 'The event is %1$d bytes; the relay takes at most %2$d.', 'real-time-event-trigger' ), strlen( $body ), RTET_Protocol::MAX_FRAME_BYTES ) );
		}
		if ( ! empty( $options['blocking'] ) ) {
			$result = self::post( $item );
			if ( is_wp_error( $result ) && 'rtet_retry' === $result->get_error_code() ) {
				// Not lost: it waits with the other undelivered events.
				RTET_Queue::push( array( $item ) );
				self::schedule_retry();
				$result->add_data( array( 'id' => $item['id'] ) );
			}
			return is_wp_error( $result ) ? $result : $item['id'];
		}
		// Sent by flush_at_shutdown() (hooked to `shutdown` in RTET_Plugin).
		self::$queue[] = $item;
		return $item['id'];
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
	 * Posts earlier undelivered events (claimed from RTET_Queue), then this
	 * request's, oldest first.
	 *
	 * Stops at the first event the relay does not take: it and everything
	 * after it wait in the queue, so one flush costs at most one timeout. When
	 * that failure was slow (a relay that accepts connections but does not
	 * answer), flushes in the next SLOW_BACKOFF seconds do not try at all; a
	 * refused connection costs nothing, so the next flush tries again.
	 *
	 * @param bool $force Try even during the back-off (WP-Cron's retry).
	 * @return int How many events are still undelivered.
	 */
	public static function flush( $force = false ) {
		$own         = self::$queue;
		self::$queue = array();
		$trying      = $force || ! get_transient( self::SLOW_TRANSIENT );

		$claimed = $trying ? RTET_Queue::claim() : array(
			'claim' => '',
			'items' => array(),
		);
		$stuck   = false;
		foreach ( $claimed['items'] as $item ) {
			if ( time() - (int) $item['time'] > self::PENDING_TTL ) {
				RTET_Queue::remove( $item['row'] );
				continue;
			}
			if ( ! self::post_timed( $item ) ) {
				$stuck = true;
				break;
			}
			// Delivered or refused for good: either way it leaves the queue.
			RTET_Queue::remove( $item['row'] );
		}
		if ( '' !== $claimed['claim'] ) {
			RTET_Queue::release( $claimed['claim'] );
		}

		$left = array();
		foreach ( $own as $i => $item ) {
			if ( ! $trying || $stuck || ! self::post_timed( $item ) ) {
				$left  = array_slice( $own, $i );
				$stuck = true;
				break;
			}
		}
		if ( ! $stuck && $trying ) {
			delete_transient( self::SLOW_TRANSIENT );
		}
		RTET_Queue::push( $left );
		$waiting = RTET_Queue::size();
		if ( $waiting > 0 ) {
			self::schedule_retry();
		}
		return $waiting;
	}

	/**
	 * Posts one event; a slow failure starts the back-off.
	 *
	 * @param array $item Event.
	 * @return bool False when the relay did not take it and it is worth retrying.
	 */
	private static function post_timed( array $item ) {
		$started = microtime( true );
		$result  = self::post( $item );
		if ( is_wp_error( $result ) && 'rtet_retry' === $result->get_error_code() ) {
			if ( microtime( true ) - $started >= 0.5 ) {
				set_transient( self::SLOW_TRANSIENT, 1, self::SLOW_BACKOFF );
			}
			return false;
		}
		return true;
	}

	/**
	 * Plans WP-Cron's retry of undelivered events, once.
	 */
	public static function schedule_retry() {
		if ( ! wp_next_scheduled( self::RETRY_HOOK ) ) {
			wp_schedule_single_event( time() + 60, self::RETRY_HOOK );
		}
	}

	/**
	 * At the end of a WP-Cron run: events still waiting get their retry
	 * planned again, with the plan read afresh from the database.
	 *
	 * wp-cron.php writes back the whole cron array it read when it started
	 * (each event it runs is rescheduled or unscheduled from that copy), so a
	 * retry another request planned meanwhile is dropped: a race in WordPress
	 * itself. Without this, the waiting events would sit until some later
	 * request failed to deliver and planned a retry again.
	 */
	public static function replan_after_cron() {
		if ( 0 === RTET_Queue::size() ) {
			return;
		}
		wp_cache_delete( 'alloptions', 'options' );
		wp_cache_delete( 'cron', 'options' );
		self::schedule_retry();
	}

	/**
	 * The JSON body of `POST /api/send-event` for one channel.
	 *
	 * @param array  $item    Event.
	 * @param string $channel Channel.
	 * @return string|false
	 */
	private static function body( array $item, $channel ) {
		return wp_json_encode(
			array(
				'type'    => $item['event'],
				'data'    => $item['data'],
				'channel' => $channel,
				'id'      => $item['id'],
			)
		);
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
					'body'        => self::body( $item, $channel ),
				)
			);
			$code = is_wp_error( $response ) ? 0 : (int) wp_remote_retrieve_response_code( $response );
			if ( 200 === $code ) {
				RTET_Status::record( true );
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
			RTET_Status::record( 0 !== $code, $error->get_error_message() );
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
		// A worker still running the old code during an upgrade may have written the legacy option.
		RTET_Queue::migrate_legacy_option();
		if ( self::extension_available() ) {
			self::hand_queue_to_extension();
			return;
		}
		self::flush( true );
	}

	/**
	 * Gives the events the HTTP fallback left in RTET_Queue (from before the
	 * extension was installed, or from an older plugin version) to the
	 * extension, with their ids, so the relay's dedupe still applies.
	 */
	private static function hand_queue_to_extension() {
		if ( ! RTET_Settings::is_configured() ) {
			return;
		}
		$claimed = RTET_Queue::claim();
		foreach ( $claimed['items'] as $item ) {
			if ( time() - (int) $item['time'] <= self::PENDING_TTL ) {
				$sent = self::send( $item['event'], $item['data'] ?? null, $item['channels'], array( 'id' => (string) $item['id'] ) );
				if ( is_wp_error( $sent ) ) {
					// Refused by the extension: the relay would refuse it too, so it leaves the queue.
					do_action( 'rtet_event_failed', $sent, $item, implode( ',', $item['channels'] ) );
				}
			}
			RTET_Queue::remove( $item['row'] );
		}
		RTET_Queue::release( $claimed['claim'] );
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
