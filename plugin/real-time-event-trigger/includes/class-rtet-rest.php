<?php
/**
 * REST endpoints under `rtet/v1`:
 *
 * - `GET /token[?posts=1,2]`: a subscriber token for whoever asks. A visitor
 *   gets `public`; a logged-in user (cookie plus `X-WP-Nonce`) also gets
 *   `user.<ID>`, `role.<role>` for each role and `cap.<capability>` for the
 *   capabilities of RTET_Channels that they have. For each post in `posts`
 *   the token grants `post.<ID>` when the asker may read it and
 *   `post.<ID>.editors` when they may edit it (RTET_Channels). Tokens live
 *   5 minutes. `editing=ID` (the block editor's page asks it) makes a user
 *   who may edit that post a presence member of `post.<ID>.editors`, shown
 *   to the other editors with their display name and avatar only. With the
 *   readers badge on, every `post.<ID>` granted is also in `presence_counts`:
 *   the page is shown how many are reading, never who.
 *   Pages never carry a token and this answer is never cached,
 *   so page caches are safe.
 * - `POST /test`: the settings page's "Send test event" (manage_options).
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * REST routes.
 */
class RTET_REST {

	/** Route namespace. */
	const NS = 'rtet/v1';

	/**
	 * `rest_api_init`.
	 */
	public static function register_routes() {
		register_rest_route(
			self::NS,
			'/token',
			array(
				'methods'             => WP_REST_Server::READABLE,
				'callback'            => array( __CLASS__, 'token' ),
				'permission_callback' => '__return_true',
			)
		);
		register_rest_route(
			self::NS,
			'/test',
			array(
				'methods'             => WP_REST_Server::CREATABLE,
				'callback'            => array( __CLASS__, 'test' ),
				'permission_callback' => static function () {
					return current_user_can( 'manage_options' );
				},
			)
		);
	}

	/**
	 * `GET /rtet/v1/token`.
	 *
	 * @param WP_REST_Request $request The request (`posts`: post IDs the page wants channels for).
	 * @return WP_REST_Response|WP_Error
	 */
	public static function token( $request ) {
		$user     = is_user_logged_in() ? wp_get_current_user() : null;
		$posts    = $request instanceof WP_REST_Request ? RTET_Channels::parse_post_ids( $request->get_param( 'posts' ) ) : array();
		$channels = RTET_Channels::for_user( $user, $posts );
		$editing  = $request instanceof WP_REST_Request ? RTET_Channels::parse_post_ids( $request->get_param( 'editing' ) ) : array();
		$presence = array_values( array_intersect( RTET_Channels::presence_for_user( $user, $editing ), $channels ) );
		$url      = RTET_Settings::browser_url();
		if ( '' === $url ) {
			return new WP_Error( 'rtet_not_configured', __( 'Real-time events are not configured.', 'real-time-event-trigger' ), array( 'status' => 503 ) );
		}
		/**
		 * Filters how long a browser token lives, in seconds (clamped to 5 seconds..1 hour; default 5 minutes).
		 * The client sends a fresh token before the old one expires.
		 *
		 * @param int          $ttl  Seconds.
		 * @param WP_User|null $user The user, null for a visitor.
		 */
		$ttl    = (int) apply_filters( 'rtet_token_ttl', RTET_Token::TTL, $user );
		$ttl    = max( RTET_Token::MIN_TTL, min( 3600, $ttl ) );
		$claims = array() === $presence ? array() : array(
			'presence' => $presence,
			'info'     => RTET_Token::member_info( $user ),
		);
		$counts = RTET_Settings::value( 'readers_badge' ) ? RTET_Channels::reader_counts( $channels, $posts ) : array();
		if ( array() !== $counts ) {
			$claims['presence_counts'] = $counts;
		}
		$issued = RTET_Token::issue( $channels, $user ? (string) $user->ID : '', $ttl, $claims );
		if ( is_wp_error( $issued ) ) {
			$issued->add_data( array( 'status' => 503 ) );
			return $issued;
		}
		$response = new WP_REST_Response(
			array(
				'url'      => $url,
				'token'    => $issued['token'],
				'channels' => $channels,
				'expires'  => $issued['expires'],
			)
		);
		$response->header( 'Cache-Control', 'no-store, private' );
		return $response;
	}

	/**
	 * `POST /rtet/v1/test`: sends `rtet_test` to the current user's channel and
	 * reports what the relay did with it, as `status`:
	 *
	 * - `delivered`: the relay stored it (acked, or HTTP 200);
	 * - `queued`: the relay did not answer in time; the event waits and is retried;
	 * - `refused`: the relay refused it (a bad key, a limit): HTTP 502.
	 *
	 * @return WP_REST_Response|WP_Error
	 */
	public static function test() {
		$user      = wp_get_current_user();
		$data      = array(
			'message' => __( 'Test event from the settings page', 'real-time-event-trigger' ),
			'sent_at' => gmdate( 'c' ),
			'by'      => $user->display_name,
		);
		$extension = RTET_Sender::extension_available();
		$before    = $extension && function_exists( 'rtet_stats' ) ? (array) rtet_stats() : array();
		$result    = RTET_Events::dispatch(
			'rtet_test',
			$data,
			array( 'user.' . (int) $user->ID ),
			array( 'source' => 'test' ),
			array( 'blocking' => true )
		);
		if ( false === $result ) {
			return new WP_Error( 'rtet_dropped', __( 'A filter dropped the test event.', 'real-time-event-trigger' ), array( 'status' => 409 ) );
		}
		if ( is_wp_error( $result ) ) {
			$error_data = (array) $result->get_error_data();
			if ( 'rtet_retry' === $result->get_error_code() && isset( $error_data['id'] ) ) {
				return self::test_outcome( (string) $error_data['id'], 'queued', $result->get_error_message() );
			}
			$result->add_data(
				array(
					'status'  => 502,
					'outcome' => 'refused',
				)
			);
			return $result;
		}
		if ( ! $extension ) {
			return self::test_outcome( $result, 'delivered', '' );
		}

		// The extension queued it: wait (bounded) for the relay's answer.
		$acked = function_exists( 'rtet_flush' ) && rtet_flush( 2.0 );
		$after = function_exists( 'rtet_stats' ) ? (array) rtet_stats() : array();
		if ( (int) ( $after['nacked'] ?? 0 ) > (int) ( $before['nacked'] ?? 0 ) ) {
			return new WP_Error(
				'rtet_rejected',
				/* translators: %s: the relay's reason */
				sprintf( __( 'The relay refused the event: %s', 'real-time-event-trigger' ), (string) ( $after['last_error'] ?? '' ) ),
				array(
					'status'  => 502,
					'outcome' => 'refused',
					'id'      => $result,
				)
			);
		}
		if ( ! $acked ) {
			return self::test_outcome( $result, 'queued', (string) ( $after['last_error'] ?? '' ) );
		}
		return self::test_outcome( $result, 'delivered', '' );
	}

	/**
	 * The answer of the test endpoint.
	 *
	 * @param string $id      Event id.
	 * @param string $status  `delivered` or `queued`.
	 * @param string $message Why it was not delivered.
	 * @return WP_REST_Response
	 */
	private static function test_outcome( $id, $status, $message ) {
		return new WP_REST_Response(
			array(
				'id'        => $id,
				'transport' => RTET_Sender::transport(),
				'status'    => $status,
				'message'   => $message,
			)
		);
	}
}
