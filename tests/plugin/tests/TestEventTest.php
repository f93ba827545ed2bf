<?php
/**
 * `POST /wp-json/rtet/v1/test` (the settings page's "Send test event"): it
 * says what the relay did with the event.
 *
 * @package real-time-event-trigger
 */

/**
 * The test event.
 */
class TestEventTest extends RTET_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		wp_set_current_user( self::create_user( 'administrator' )->ID );
		RTET_Queue::install();
		RTET_Sender::flush( true );
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
	}

	/**
	 * Presses "Send test event".
	 *
	 * @return WP_REST_Response
	 */
	private static function press() {
		return rest_do_request( new WP_REST_Request( 'POST', '/rtet/v1/test' ) );
	}

	/**
	 * Both transports: the HTTP fallback, and the extension when it is built.
	 *
	 * @return array
	 */
	public function transports() {
		return array(
			'http fallback' => array( false ),
			'extension'     => array( true ),
		);
	}

	/**
	 * Switches to a transport.
	 *
	 * @param bool $extension Use the extension.
	 */
	private function transport( $extension ) {
		if ( ! $extension ) {
			$this->use_http_fallback();
		} elseif ( ! function_exists( 'rtet_send_event' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
	}

	/**
	 * @dataProvider transports
	 */
	public function test_with_the_relay_up_it_is_delivered( $extension ) {
		$this->transport( $extension );
		$res = self::press();
		$this->assertSame( 200, $res->get_status(), wp_json_encode( $res->get_data() ) );
		$this->assertSame( 'delivered', $res->get_data()['status'] );
		$this->assertSame( $extension ? 'extension' : 'http', $res->get_data()['transport'] );
	}

	/**
	 * @dataProvider transports
	 */
	public function test_with_the_relay_down_it_is_queued_not_sent( $extension ) {
		$this->transport( $extension );
		$this->relay_down();
		$res = self::press();
		$this->assertSame( 200, $res->get_status() );
		$body = $res->get_data();
		$this->assertSame( 'queued', $body['status'] );
		$this->assertNotSame( '', $body['message'], 'it says why' );
		if ( ! $extension ) {
			$this->assertSame( array( $body['id'] ), RTET_Queue::ids(), 'the event waits to be retried' );
		}
	}

	public function test_with_a_key_the_relay_does_not_know_it_is_refused() {
		$this->use_http_fallback();
		$this->set_settings( array( 'api_key' => bin2hex( random_bytes( 24 ) ) ) );
		$res = self::press();
		$this->assertSame( 502, $res->get_status() );
		$this->assertSame( 'refused', $res->as_error()->get_error_data()['outcome'] );
		$this->assertStringContainsString( 'HTTP 401', $res->as_error()->get_error_message() );
		$this->assertSame( array(), RTET_Queue::ids(), 'a refused event is not retried' );
	}

	public function test_only_administrators_may_send_it() {
		wp_set_current_user( self::create_user( 'editor' )->ID );
		$this->assertSame( 403, self::press()->get_status() );
	}
}
