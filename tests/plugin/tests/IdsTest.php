<?php
/**
 * Event ids: the extension makes them when it is loaded; without it PHP
 * makes ids of the same format (ULID).
 *
 * @package real-time-event-trigger
 */

/**
 * Event ids.
 */
class IdsTest extends RTET_Test_Case {

	/** A ULID: 26 characters of Crockford's base32, the first at most 7 (128 bits). */
	const ULID = '/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/';

	/**
	 * The millisecond timestamp of a ULID.
	 *
	 * @param string $id ULID.
	 * @return int
	 */
	private static function ulid_ms( $id ) {
		$ms = 0;
		foreach ( str_split( substr( $id, 0, 10 ) ) as $c ) {
			$ms = $ms * 32 + strpos( '0123456789ABCDEFGHJKMNPQRSTVWXYZ', $c );
		}
		return $ms;
	}

	public function test_php_ids_are_ulids_of_now_and_unique() {
		$before = (int) floor( microtime( true ) * 1000 );
		$ids    = array();
		for ( $i = 0; $i < 2000; $i++ ) {
			$ids[] = RTET_Sender::new_id();
		}
		$after = (int) floor( microtime( true ) * 1000 );
		foreach ( $ids as $id ) {
			$this->assertMatchesRegularExpression( self::ULID, $id );
			$this->assertTrue( RTET_Protocol::is_id( $id ) );
			$this->assertGreaterThanOrEqual( $before, self::ulid_ms( $id ) );
			$this->assertLessThanOrEqual( $after, self::ulid_ms( $id ) );
		}
		$this->assertCount( 2000, array_unique( $ids ) );
	}

	public function test_the_http_fallback_sends_php_ids() {
		$this->use_http_fallback();
		$this->assertMatchesRegularExpression( self::ULID, rtet_trigger_event( 'plugin_test', null, 'plugin-ids' ) );
	}

	public function test_a_given_id_is_kept_and_an_invalid_one_refused() {
		$this->use_http_fallback();
		$this->assertSame( 'order-42:paid', rtet_trigger_event( 'plugin_test', null, 'plugin-ids', array( 'id' => 'order-42:paid' ) ) );
		$this->assertSame( 'rtet_invalid_id', rtet_trigger_event( 'plugin_test', null, 'plugin-ids', array( 'id' => 'has space' ) )->get_error_code() );
	}

	public function test_with_the_extension_ids_are_the_extensions_and_the_relay_acks_them() {
		if ( ! function_exists( 'rtet_send_event' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
		$id = rtet_trigger_event( 'plugin_test', null, 'plugin-ids' );
		$this->assertMatchesRegularExpression( self::ULID, $id );
		$this->assertTrue( rtet_flush( 5.0 ), 'the relay acked it' );
		$this->assertNull( rtet_stats()['last_error'] );
	}
}
