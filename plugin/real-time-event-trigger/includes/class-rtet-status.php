<?php
/**
 * What the plugin knows of its link to the relay, for people: whether it is
 * connected and since when, the last error and when it happened, how many
 * events wait, and what to do about a problem. The settings page and Site
 * Health both read it from here.
 *
 * The state is one small autoloaded option written only when something
 * changes (the relay went up or down, a new error), so sending costs no
 * write. It is fed by the relay health check, the HTTP fallback's posts and
 * the extension's own stats.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The link to the relay, in words.
 */
class RTET_Status {

	/** Option: {up: bool|null, since: int, error: string, error_at: int}. */
	const OPTION = 'rtet_relay_state';

	/**
	 * The stored state.
	 *
	 * @return array{up: bool|null, since: int, error: string, error_at: int}
	 */
	public static function state() {
		$state = get_option( self::OPTION, array() );
		$state = is_array( $state ) ? $state : array();
		return array(
			'up'       => isset( $state['up'] ) ? (bool) $state['up'] : null,
			'since'    => (int) ( $state['since'] ?? 0 ),
			'error'    => (string) ( $state['error'] ?? '' ),
			'error_at' => (int) ( $state['error_at'] ?? 0 ),
		);
	}

	/**
	 * Records what was just seen of the relay; writes only when it changes something.
	 *
	 * @param bool   $up    Whether the relay took a request.
	 * @param string $error What went wrong, when it did.
	 */
	public static function record( $up, $error = '' ) {
		$state = self::state();
		$new   = $state;
		if ( $state['up'] !== (bool) $up ) {
			$new['up']    = (bool) $up;
			$new['since'] = time();
		}
		if ( '' !== $error && $error !== $state['error'] ) {
			$new['error']    = (string) $error;
			$new['error_at'] = time();
		}
		if ( $new !== $state ) {
			update_option( self::OPTION, $new, true );
		}
	}

	/**
	 * Asks the relay now (`/healthz`) and records the answer.
	 *
	 * @return true|WP_Error
	 */
	public static function check() {
		$health = RTET_Sender::relay_health();
		self::record( true === $health, is_wp_error( $health ) ? $health->get_error_message() : '' );
		if ( RTET_Sender::extension_available() && function_exists( 'rtet_stats' ) ) {
			$stats = (array) rtet_stats();
			if ( ! empty( $stats['last_error'] ) ) {
				// The extension keeps its last error without a time: it counts from when the plugin first saw it.
				self::record( true === $health, (string) $stats['last_error'] );
			}
		}
		return $health;
	}

	/**
	 * How many events wait to be delivered, and where.
	 *
	 * @return array{count: int, where: string} `where`: 'queue' (the HTTP fallback's table) or 'worker' (this PHP worker's extension).
	 */
	public static function waiting() {
		if ( RTET_Sender::extension_available() && function_exists( 'rtet_stats' ) ) {
			$stats = (array) rtet_stats();
			return array(
				'count' => (int) ( $stats['queued'] ?? 0 ) + (int) ( $stats['spooled'] ?? 0 ),
				'where' => 'worker',
			);
		}
		return array(
			'count' => RTET_Queue::size(),
			'where' => 'queue',
		);
	}

	/**
	 * What to do about an error, in one sentence.
	 *
	 * @param string $error The error message.
	 * @return string
	 */
	public static function advice( $error ) {
		if ( ! RTET_Settings::is_configured() ) {
			return __( 'Set the relay URL and a strong API key below (the same key the relay has).', 'real-time-event-trigger' );
		}
		if ( preg_match( '/\b401\b|unauthori[sz]ed|api key/i', $error ) ) {
			return __( 'The relay does not know this site\'s API key: give the relay the same key (RTET_API_KEYS), or paste the relay\'s key below.', 'real-time-event-trigger' );
		}
		if ( preg_match( '/\b429\b|rate.?limit/i', $error ) ) {
			return __( 'The relay is refusing events for going over its rate limit: raise the limit in the relay\'s configuration, or send fewer events.', 'real-time-event-trigger' );
		}
		if ( preg_match( '/\b(413|too.?large)\b/i', $error ) ) {
			return __( 'An event was larger than the relay takes (64 KiB): send less data in it.', 'real-time-event-trigger' );
		}
		return sprintf(
			/* translators: %s: relay URL */
			__( 'Check that rtet-relay is running and that this server can reach it at %s (address, port, firewall, TLS certificate). Events wait and are sent again once it answers.', 'real-time-event-trigger' ),
			RTET_Settings::server_url()
		);
	}

	/**
	 * A time as "2026-11-28 14:03:07 (5 minutes ago)" in the site's time zone.
	 *
	 * @param int $time Unix time.
	 * @return string
	 */
	public static function when( $time ) {
		return sprintf(
			/* translators: 1: date and time, 2: how long ago, e.g. "5 mins" */
			__( '%1$s (%2$s ago)', 'real-time-event-trigger' ),
			wp_date( 'Y-m-d H:i:s', (int) $time ),
			human_time_diff( (int) $time, time() )
		);
	}
}
