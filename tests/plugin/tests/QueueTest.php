<?php
/**
 * The HTTP fallback's retry queue: events the relay did not take wait, in
 * order, and go out once it is back; concurrent php-fpm workers neither lose
 * nor double any.
 *
 * @package real-time-event-trigger
 */

/**
 * The retry queue.
 */
class QueueTest extends RTET_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		$this->use_http_fallback();
		RTET_Queue::install();
		// Events earlier tests left for `shutdown` go out now, so each test starts with an empty queue.
		RTET_Sender::flush( true );
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
	}

	public function test_events_wait_in_order_while_the_relay_is_down_and_go_out_once_it_is_back() {
		$this->relay_down();
		$ids = array();
		for ( $i = 0; $i < 3; $i++ ) {
			$ids[] = rtet_trigger_event( 'plugin_test', array( 'n' => $i ), 'plugin-queue' );
		}
		$this->assertSame( 3, RTET_Sender::flush() );
		$this->assertSame( $ids, RTET_Queue::ids() );
		$this->assertNotFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ), 'WP-Cron will retry' );

		// Still down: the next request's event waits behind them.
		$ids[] = rtet_trigger_event( 'plugin_test', array( 'n' => 3 ), 'plugin-queue' );
		$this->assertSame( 4, RTET_Sender::flush() );
		$this->assertSame( $ids, RTET_Queue::ids() );

		$this->set_settings( array( 'websocket_server_url' => getenv( 'RTET_RELAY_URL' ) ) );
		$stored = self::relay_metric( 'rtet_events_published_total' );
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( array(), RTET_Queue::ids() );
		$this->assertSame( $stored + 4, self::relay_metric( 'rtet_events_published_total' ) );
	}

	public function test_an_event_the_relay_refuses_leaves_the_queue_and_is_reported() {
		$failures = array();
		$this->filter(
			'rtet_event_failed',
			static function ( $error ) use ( &$failures ) {
				$failures[] = $error->get_error_code();
			}
		);
		$this->relay_down();
		rtet_trigger_event( 'plugin_test', array(), 'plugin-queue' );
		RTET_Sender::flush();
		$this->assertSame( 1, RTET_Queue::size() );

		// Back, but with a key the relay does not know: 401, not worth retrying.
		$this->set_settings(
			array(
				'websocket_server_url' => getenv( 'RTET_RELAY_URL' ),
				'api_key'              => bin2hex( random_bytes( 24 ) ),
			)
		);
		$this->assertSame( 0, RTET_Sender::flush( true ) );
		$this->assertSame( array( 'rtet_retry', 'rtet_rejected' ), $failures );
	}

	public function test_events_older_than_the_relays_history_window_are_dropped() {
		RTET_Queue::push(
			array(
				array(
					'id'       => RTET_Sender::new_id(),
					'event'    => 'plugin_test',
					'data'     => null,
					'channels' => array( 'plugin-queue' ),
					'time'     => time() - RTET_Sender::PENDING_TTL - 1,
				),
			)
		);
		$this->assertSame( 0, RTET_Queue::size() );
	}

	public function test_the_queue_keeps_at_most_its_cap_dropping_the_oldest() {
		$items = array();
		for ( $i = 0; $i < RTET_Sender::PENDING_MAX + 5; $i++ ) {
			$items[] = array(
				'id'       => 'e' . $i,
				'event'    => 'plugin_test',
				'data'     => null,
				'channels' => array( 'plugin-queue' ),
				'time'     => time(),
			);
		}
		RTET_Queue::push( $items );
		$ids = RTET_Queue::ids();
		$this->assertCount( RTET_Sender::PENDING_MAX, $ids );
		$this->assertSame( 'e5', $ids[0] );
		$this->assertSame( 'e' . ( RTET_Sender::PENDING_MAX + 4 ), end( $ids ) );
	}

	public function test_a_claimed_event_is_not_claimed_again_until_released() {
		RTET_Queue::push(
			array(
				array(
					'id'       => 'only',
					'event'    => 'plugin_test',
					'data'     => null,
					'channels' => array( 'plugin-queue' ),
					'time'     => time(),
				),
			)
		);
		$first  = RTET_Queue::claim();
		$second = RTET_Queue::claim();
		$this->assertSame( array( 'only' ), array_column( $first['items'], 'id' ) );
		$this->assertSame( array(), $second['items'] );
		RTET_Queue::release( $first['claim'] );
		$this->assertSame( array( 'only' ), array_column( RTET_Queue::claim()['items'], 'id' ) );
	}

	public function test_parallel_requests_while_the_relay_is_down_lose_nothing_and_double_nothing() {
		$this->relay_down();
		$n       = 40;
		$answers = self::parallel_get(
			array_map(
				static function ( $i ) {
					return '/wp-json/rtet-plugin-test/v1/emit?n=' . $i;
				},
				range( 1, $n )
			)
		);
		$ids = array();
		foreach ( $answers as $a ) {
			$this->assertSame( 200, $a['status'], wp_json_encode( $a['body'] ) );
			$ids[] = $a['body']['id'];
		}
		$this->assertCount( $n, array_unique( $ids ) );
		$waiting = RTET_Queue::ids();
		sort( $ids );
		sort( $waiting );
		$this->assertSame( $ids, $waiting, 'every event waits, each once' );

		// The relay is back: more parallel requests flush the backlog while adding their own.
		$this->set_settings( array( 'websocket_server_url' => getenv( 'RTET_RELAY_URL' ) ) );
		$stored     = self::relay_metric( 'rtet_events_published_total' );
		$duplicates = self::relay_metric( 'rtet_duplicates_total' );
		$answers    = self::parallel_get(
			array_map(
				static function ( $i ) {
					return '/wp-json/rtet-plugin-test/v1/emit?n=' . $i;
				},
				range( $n + 1, $n + 20 )
			)
		);
		foreach ( $answers as $a ) {
			$this->assertSame( 200, $a['status'] );
		}
		RTET_Sender::flush( true );
		$this->assertSame( array(), RTET_Queue::ids() );
		$this->assertSame( $stored + $n + 20, self::relay_metric( 'rtet_events_published_total' ), 'each event stored' );
		$this->assertSame( $duplicates, self::relay_metric( 'rtet_duplicates_total' ), 'no event sent twice' );
	}
}
