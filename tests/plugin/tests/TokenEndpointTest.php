<?php
/**
 * `GET /wp-json/rtet/v1/token`: which channels each kind of user gets, the
 * token's claims and signature, and what happens when the extension cannot sign.
 *
 * @package real-time-event-trigger
 */

/**
 * The token endpoint.
 */
class TokenEndpointTest extends RTET_Test_Case {

	/**
	 * Asks the endpoint as the current user (a REST request inside WordPress).
	 *
	 * @return WP_REST_Response
	 */
	private static function ask() {
		return rest_do_request( new WP_REST_Request( 'GET', '/rtet/v1/token' ) );
	}

	/**
	 * A token's claims, after checking its HS256 signature with the site's key.
	 *
	 * @param string $token JWT.
	 * @return array
	 */
	private static function verified_claims( $token ) {
		$parts = explode( '.', $token );
		self::assertCount( 3, $parts );
		$b64 = static function ( $s ) {
			return base64_decode( strtr( $s, '-_', '+/' ) ); // phpcs:ignore
		};
		self::assertEquals( array( 'alg' => 'HS256', 'typ' => 'JWT' ), json_decode( $b64( $parts[0] ), true ) );
		$expected = hash_hmac( 'sha256', $parts[0] . '.' . $parts[1], getenv( 'RTET_API_KEY' ), true );
		self::assertTrue( hash_equals( $expected, $b64( $parts[2] ) ), 'signed with the site key' );
		return json_decode( $b64( $parts[1] ), true );
	}

	/**
	 * Channels granted to the current user, checked against the token's own claims.
	 *
	 * @return string[]
	 */
	private function granted() {
		$res = self::ask();
		$this->assertSame( 200, $res->get_status(), wp_json_encode( $res->get_data() ) );
		$body   = $res->get_data();
		$claims = self::verified_claims( $body['token'] );
		$this->assertSame( $body['channels'], $claims['channels'] );
		$this->assertSame( RTET_Token::TTL, $claims['exp'] - $claims['iat'] );
		$this->assertSame( $claims['exp'], $body['expires'] );
		$this->assertSame( RTET_Settings::browser_url(), $body['url'] );
		return $body['channels'];
	}

	public function test_a_visitor_gets_public_only() {
		$this->assertSame( array( 'public' ), $this->granted() );
	}

	public function test_a_subscriber_gets_public_their_own_channel_and_their_role() {
		$user = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.subscriber' ), $this->granted() );
	}

	public function test_an_editor_gets_the_editor_role_channel_and_not_the_administrators() {
		$user = self::create_user( 'editor' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.editor' ), $this->granted() );
	}

	public function test_an_administrator_gets_the_administrator_channel() {
		$user = self::create_user( 'administrator' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.administrator' ), $this->granted() );
	}

	public function test_a_role_whose_channel_name_would_be_too_long_is_left_out() {
		$user = self::create_user( 'subscriber' );
		$long = str_repeat( 'r', 124 ); // role.<124> is 129 characters, one over the channel limit.
		add_role( $long, 'Long' );
		add_role( substr( $long, 1 ), 'Long enough' );
		try {
			$user->add_role( $long );
			$user->add_role( substr( $long, 1 ) );
			wp_set_current_user( $user->ID );
			$granted = $this->granted();
			$this->assertNotContains( 'role.' . $long, $granted );
			$this->assertContains( 'role.' . substr( $long, 1 ), $granted );
		} finally {
			remove_role( $long );
			remove_role( substr( $long, 1 ) );
		}
	}

	public function test_the_channels_and_lifetime_filters_apply_and_the_lifetime_is_clamped() {
		$user = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$this->filter(
			'rtet_token_channels',
			static function ( $channels, $who ) use ( $user ) {
				return $who && $who->ID === $user->ID ? array_merge( $channels, array( 'team.blue' ) ) : $channels;
			},
			10,
			2
		);
		$this->filter(
			'rtet_token_ttl',
			static function () {
				return 999999;
			}
		);
		$body   = self::ask()->get_data();
		$claims = self::verified_claims( $body['token'] );
		$this->assertContains( 'team.blue', $claims['channels'] );
		$this->assertSame( 3600, $claims['exp'] - $claims['iat'] );
	}

	public function test_over_http_a_logged_out_request_gets_public_and_is_not_cached() {
		$res = wp_remote_get( rest_url( 'rtet/v1/token' ) );
		$this->assertSame( 200, wp_remote_retrieve_response_code( $res ) );
		$body = json_decode( wp_remote_retrieve_body( $res ), true );
		$this->assertSame( array( 'public' ), $body['channels'] );
		$this->assertStringContainsString( 'no-store', wp_remote_retrieve_header( $res, 'cache-control' ) );
		$this->assertSame( array( 'public' ), self::verified_claims( $body['token'] )['channels'] );
	}

	public function test_when_the_extension_cannot_sign_no_token_is_issued_and_site_health_says_why() {
		if ( ! function_exists( 'rtet_sign_token' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
		delete_option( RTET_Token::FAILURE_OPTION );
		$this->assertSame( 'good', RTET_Admin::site_status_token_signing()['status'] );

		// A filter grants a channel the protocol does not allow: the extension refuses to sign it.
		$refuse = static function ( $channels ) {
			$channels[] = 'not a channel';
			return $channels;
		};
		add_filter( 'rtet_token_channels', $refuse );
		$log = ini_get( 'error_log' );
		$tmp = tempnam( sys_get_temp_dir(), 'rtet-log' );
		ini_set( 'error_log', $tmp ); // phpcs:ignore
		try {
			$res = self::ask();
		} finally {
			ini_set( 'error_log', $log ); // phpcs:ignore
			remove_filter( 'rtet_token_channels', $refuse );
		}
		$this->assertSame( 503, $res->get_status() );
		$this->assertSame( 'rtet_signing_failed', $res->as_error()->get_error_code() );
		$this->assertArrayNotHasKey( 'token', (array) $res->get_data() );
		$this->assertStringContainsString( 'could not sign a token', (string) file_get_contents( $tmp ) );
		unlink( $tmp );
		$health = RTET_Admin::site_status_token_signing();
		$this->assertSame( 'critical', $health['status'] );
		$this->assertStringContainsString( 'refuses to sign browser tokens', $health['description'] );

		// The next token the extension signs clears it.
		$this->assertSame( 200, self::ask()->get_status() );
		$this->assertSame( 'good', RTET_Admin::site_status_token_signing()['status'] );
	}
}
