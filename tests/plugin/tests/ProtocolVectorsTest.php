<?php
/**
 * The plugin's copies of the protocol's rules (RTET_Protocol, the PHP token
 * signer, the PHP id maker) against the shared vectors in
 * tests/protocol-vectors, which the Rust crates are checked against too.
 *
 * @package real-time-event-trigger
 */

/**
 * Protocol vectors.
 */
class ProtocolVectorsTest extends RTET_Test_Case {

	/**
	 * One vector file, decoded.
	 *
	 * @param string $name File name.
	 * @return array
	 */
	private static function vectors( $name ) {
		$json = file_get_contents( dirname( __DIR__, 2 ) . '/protocol-vectors/' . $name ); // phpcs:ignore
		self::assertIsString( $json, $name );
		$data = json_decode( $json, true, 512, JSON_THROW_ON_ERROR );
		return $data;
	}

	public function test_names_follow_the_protocol() {
		$names = self::vectors( 'names.json' );
		$rules = array(
			'channel' => array( 'RTET_Protocol', 'is_channel' ),
			'event'   => array( 'RTET_Protocol', 'is_event' ),
			'id'      => array( 'RTET_Protocol', 'is_id' ),
		);
		foreach ( $rules as $kind => $check ) {
			$this->assertNotEmpty( $names[ $kind ]['valid'] );
			foreach ( $names[ $kind ]['valid'] as $name ) {
				$this->assertTrue( $check( $name ), "$kind " . json_encode( $name ) . ' is valid' );
			}
			foreach ( $names[ $kind ]['invalid'] as $name ) {
				$this->assertFalse( $check( $name ), "$kind " . json_encode( $name ) . ' is invalid' );
			}
			$this->assertTrue( $check( str_repeat( 'a', $names[ $kind ]['max'] ) ), "$kind of max length" );
			$this->assertFalse( $check( str_repeat( 'a', $names[ $kind ]['max'] + 1 ) ), "$kind one over max length" );
		}
	}

	public function test_limits_are_the_protocols() {
		$limits = self::vectors( 'limits.json' );
		$this->assertSame( $limits['max_frame_bytes'], RTET_Protocol::MAX_FRAME_BYTES );
		$this->assertSame( $limits['max_token_bytes'], RTET_Protocol::MAX_TOKEN_BYTES );
		$this->assertSame( $limits['min_api_key_length'], RTET_Protocol::MIN_KEY_LENGTH );
		$this->assertSame( $limits['token_default_ttl_secs'], RTET_Token::TTL );
		$this->assertSame( $limits['history_age_secs'], RTET_Sender::PENDING_TTL, 'the retry queue keeps events as long as the relay\'s history' );
		$this->assertSame( $limits['member_name_max_chars'], RTET_Protocol::MEMBER_NAME_MAX_CHARS );
		$this->assertSame( $limits['member_avatar_max_bytes'], RTET_Protocol::MEMBER_AVATAR_MAX_BYTES );
	}

	public function test_the_http_fallback_refuses_an_event_over_the_frame_limit_and_takes_one_at_it() {
		$this->use_http_fallback();
		$max = self::vectors( 'limits.json' )['max_frame_bytes'];
		// {"type":"plugin_test","data":"…","channel":"plugin-vectors","id":"<26>"}: everything but the data string.
		$overhead = strlen( '{"type":"plugin_test","data":"","channel":"plugin-vectors","id":"' . str_repeat( 'A', 26 ) . '"}' );
		$this->assertIsString( rtet_trigger_event( 'plugin_test', str_repeat( 'x', $max - $overhead ), 'plugin-vectors' ) );
		$refused = rtet_trigger_event( 'plugin_test', str_repeat( 'x', $max - $overhead + 1 ), 'plugin-vectors' );
		$this->assertInstanceOf( WP_Error::class, $refused );
		$this->assertSame( 'rtet_too_large', $refused->get_error_code() );
	}

	public function test_relay_urls_map_to_the_same_endpoints() {
		$urls = self::vectors( 'relay-urls.json' );
		foreach ( $urls['valid'] as $v ) {
			$this->assertTrue( RTET_Protocol::is_relay_url( $v['relay_url'] ), $v['relay_url'] );
			$this->assertSame( $v['publish_ws_url'], RTET_Protocol::with_path( $v['relay_url'], '/publish' ), $v['relay_url'] );
			$this->assertSame( $v['subscribe_url'], RTET_Protocol::with_path( $v['relay_url'], '/ws' ), $v['relay_url'] );
			$this->assertSame( $v['http_publish_url'], RTET_Protocol::http_base( $v['relay_url'] ) . '/api/send-event', $v['relay_url'] );
			$this->assertSame( $v['health_url'], RTET_Protocol::http_base( $v['relay_url'] ) . '/healthz', $v['relay_url'] );
		}
		foreach ( $urls['invalid'] as $v ) {
			$this->assertFalse( RTET_Protocol::is_relay_url( $v['relay_url'] ), json_encode( $v['relay_url'] ) . ': ' . $v['why'] );
		}
	}

	public function test_the_php_signer_writes_the_same_tokens_as_the_extension() {
		$tokens = self::vectors( 'tokens.json' );
		foreach ( $tokens['valid'] as $v ) {
			$this->assertSame( $v['token'], RTET_Token::sign_hs256( $v['claims'], $v['key'] ), $v['why'] );
		}
	}

	public function test_php_ids_have_the_extensions_format() {
		$ids = self::vectors( 'event-ids.json' );
		$re  = '/' . $ids['pattern'] . '/D';
		foreach ( $ids['examples'] as $example ) {
			$this->assertMatchesRegularExpression( $re, $example['id'] );
		}
		foreach ( $ids['invalid'] as $id ) {
			$this->assertDoesNotMatchRegularExpression( $re, $id );
		}
		for ( $i = 0; $i < 200; $i++ ) {
			$id = RTET_Sender::new_id();
			$this->assertSame( $ids['length'], strlen( $id ) );
			$this->assertMatchesRegularExpression( $re, $id );
			$this->assertSame( '', trim( $id, $ids['alphabet'] ) );
		}
	}

	public function test_keys_are_refused_and_accepted_as_keys_json_says() {
		$keys = self::vectors( 'keys.json' );
		$this->assertSame( $keys['min_length'], RTET_Protocol::MIN_KEY_LENGTH );
		$this->assertSame( $keys['max_repeat'], RTET_Protocol::MAX_REPEAT );
		$this->assertSame( $keys['placeholders'], RTET_Protocol::PLACEHOLDER_PARTS );
		foreach ( $keys['refused'] as $v ) {
			$this->assertNotNull( RTET_Protocol::key_problem( $v['key'] ), $v['why'] );
		}
		foreach ( $keys['accepted'] as $key ) {
			$this->assertNull( RTET_Protocol::key_problem( $key ), $key );
		}
	}
}
