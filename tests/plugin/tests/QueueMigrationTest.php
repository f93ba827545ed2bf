<?php
/**
 * Upgrading from a plugin version that kept the HTTP fallback's undelivered
 * events in the `rtet_pending_events` option: the events move into the
 * retry queue's table once, in order, even when many workers load the new
 * version at the same moment, and then reach the relay.
 *
 * @package real-time-event-trigger
 */

/**
 * The legacy option's migration.
 */
class QueueMigrationTest extends RTET_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		$this->use_http_fallback();
		RTET_Queue::install();
		RTET_Sender::flush( true );
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
	}

	protected function tearDown(): void {
		delete_option( RTET_Queue::LEGACY_OPTION );
		RTET_Queue::install();
		parent::tearDown();
	}

	/**
	 * Events as the version before the table stored them (RTET_Sender::flush() wrote this option).
	 *
	 * @param int $n How many.
	 * @return array[]
	 */
	private static function legacy_events( $n ) {
		$items = array();
		for ( $i = 0; $i < $n; $i++ ) {
			$items[] = array(
				'id'       => RTET_Sender::new_id(),
				'event'    => 'plugin_test',
				'data'     => array( 'legacy' => $i ),
				'channels' => array( 'plugin-migration', 'plugin-migration-2' ),
				'time'     => time(),
			);
		}
		return $items;
	}

	/**
	 * The site as the older version left it: the option written, the table's schema older.
	 *
	 * @param mixed $value The option's value.
	 */
	private static function leave_legacy_option( $value ) {
		update_option( RTET_Queue::LEGACY_OPTION, $value, false );
		update_option( RTET_Queue::SCHEMA_OPTION, '1', true );
	}

	/**
	 * Whether the option is still in the database (past any cache).
	 *
	 * @return bool
	 */
	private static function legacy_option_stored() {
		global $wpdb;
		return null !== $wpdb->get_var( $wpdb->prepare( "SELECT option_id FROM {$wpdb->options} WHERE option_name = %s", RTET_Queue::LEGACY_OPTION ) ); // phpcs:ignore
	}

	public function test_events_left_in_the_legacy_option_move_into_the_queue_in_order_and_reach_the_relay() {
		$items = self::legacy_events( 3 );
		self::leave_legacy_option( $items );

		RTET_Plugin::upgrade();

		$this->assertSame( array_column( $items, 'id' ), RTET_Queue::ids() );
		$this->assertFalse( self::legacy_option_stored(), 'the option is deleted' );
		$this->assertFalse( get_option( RTET_Queue::LEGACY_OPTION ), 'and gone from the cache' );
		$this->assertSame( RTET_Queue::SCHEMA_VERSION, get_option( RTET_Queue::SCHEMA_OPTION ) );
		$this->assertNotFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ), 'WP-Cron will send them' );

		// What WP-Cron's retry does: each event reaches the relay on both of its channels.
		$stored = self::relay_metric( 'rtet_events_published_total' );
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( array(), RTET_Queue::ids() );
		$this->assertSame( $stored + 6, self::relay_metric( 'rtet_events_published_total' ) );
	}

	public function test_a_second_upgrade_moves_nothing_again() {
		$items = self::legacy_events( 2 );
		self::leave_legacy_option( $items );
		RTET_Plugin::upgrade();
		update_option( RTET_Queue::SCHEMA_OPTION, '1', true );
		RTET_Plugin::upgrade();
		$this->assertSame( array_column( $items, 'id' ), RTET_Queue::ids() );
	}

	public function test_many_workers_loading_the_new_version_at_once_move_each_event_once() {
		$items = self::legacy_events( 20 );
		self::leave_legacy_option( $items );

		// Every request loads the plugin, and each php-fpm worker sees the old schema version.
		$answers = self::parallel_get( array_fill( 0, 12, '/wp-json/rtet/v1/token' ) );
		foreach ( $answers as $a ) {
			$this->assertSame( 200, $a['status'] );
		}
		wp_cache_flush();
		$this->assertSame( array_column( $items, 'id' ), RTET_Queue::ids(), 'each event once, in order' );
		$this->assertFalse( self::legacy_option_stored() );
		$this->assertSame( RTET_Queue::SCHEMA_VERSION, get_option( RTET_Queue::SCHEMA_OPTION ) );
	}

	public function test_entries_that_are_not_events_are_dropped_and_the_rest_moved() {
		$good = self::legacy_events( 1 );
		$bad  = array(
			'not an event',
			array( 'id' => 'x' ),
			array(
				'id'       => 'bad id with spaces',
				'event'    => 'plugin_test',
				'channels' => array( 'plugin-migration' ),
				'time'     => time(),
			),
			array(
				'id'       => 'ok-id',
				'event'    => 'plugin_test',
				'channels' => array( 'not a channel' ),
				'time'     => time(),
			),
		);
		self::leave_legacy_option( array_merge( $bad, $good ) );
		RTET_Plugin::upgrade();
		$this->assertSame( array_column( $good, 'id' ), RTET_Queue::ids() );
		$this->assertFalse( self::legacy_option_stored() );
	}

	public function test_an_option_that_is_not_a_list_is_removed_without_error() {
		self::leave_legacy_option( 'garbage' );
		RTET_Plugin::upgrade();
		$this->assertSame( array(), RTET_Queue::ids() );
		$this->assertFalse( self::legacy_option_stored() );
	}

	public function test_with_the_extension_wp_crons_retry_hands_migrated_events_to_it() {
		if ( ! function_exists( 'rtet_send_event' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
		$this->filter( 'rtet_use_extension', '__return_true', 20 );
		$items = self::legacy_events( 2 );
		self::leave_legacy_option( $items );
		RTET_Plugin::upgrade();
		$this->assertSame( array_column( $items, 'id' ), RTET_Queue::ids() );

		$stored = self::relay_metric( 'rtet_events_published_total' );
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( array(), RTET_Queue::ids() );
		$this->assertTrue( rtet_flush( 5.0 ), 'the extension delivered them' );
		$this->assertSame( $stored + 4, self::relay_metric( 'rtet_events_published_total' ) );
	}
}
