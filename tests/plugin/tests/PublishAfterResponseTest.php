<?php
/**
 * Publishing through php-fpm: the editor has the answer before the post's
 * event is worked out and sent (with rtet.so and on the HTTP fallback), a
 * post published while the relay is down reaches it once it is back, and no
 * event reaches it twice.
 *
 * The posts are published by the test fixture's endpoint in a php-fpm
 * worker (tests/plugin/fixtures/mu-plugins), the relay is the site's real one.
 *
 * @package real-time-event-trigger
 */

/**
 * What an editor and the relay see of a publish.
 */
class PublishAfterResponseTest extends RTET_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		$this->use_http_fallback();
		RTET_Sender::flush( true );
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
	}

	/**
	 * GET from the site; the status and the decoded answer.
	 *
	 * @param string $path Path under the site URL.
	 * @return array{status: int, body: mixed}
	 */
	private static function get( $path ) {
		$h = curl_init( getenv( 'RTET_SITE_URL' ) . $path );
		curl_setopt_array( $h, array( CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT => 30 ) );
		$body   = curl_exec( $h );
		$status = (int) curl_getinfo( $h, CURLINFO_RESPONSE_CODE );
		curl_close( $h );
		return array(
			'status' => $status,
			'body'   => json_decode( (string) $body, true ),
		);
	}

	/**
	 * Waits until `$check` returns true (polling the relay or the database), at most 30 s.
	 *
	 * @param callable $check Condition.
	 * @param string   $what  What is awaited, for the failure message.
	 */
	private static function eventually( callable $check, $what ) {
		$deadline = microtime( true ) + 30;
		while ( ! $check() ) {
			self::assertLessThan( $deadline, microtime( true ), "timed out waiting until $what" );
			usleep( 20000 );
		}
	}

	/**
	 * The transports php-fpm can use here.
	 *
	 * @return array[]
	 */
	public static function transports() {
		return array(
			'HTTP fallback' => array( 'http' ),
			'rtet.so'       => array( 'extension' ),
		);
	}

	/**
	 * The editor's answer does not wait for the post's event.
	 *
	 * @dataProvider transports
	 * @param string $transport 'http' or 'extension'.
	 */
	public function test_the_editor_has_the_answer_before_the_event_is_worked_out_and_sent( $transport ) {
		if ( 'extension' === $transport && ! extension_loaded( 'rtet' ) ) {
			$this->markTestSkipped( 'rtet.so is not built, so php-fpm runs without it' );
		}
		$token = bin2hex( random_bytes( 8 ) );
		$file  = sys_get_temp_dir() . '/rtet-hold-' . $token;
		$lock  = fopen( $file, 'c' );
		$this->assertTrue( flock( $lock, LOCK_EX ) );
		$published  = self::relay_metric( 'rtet_events_published_total' );
		$duplicates = self::relay_metric( 'rtet_duplicates_total' );
		try {
			// The worker's work on the event waits for our lock: had it come before the answer, there would be no answer.
			$answer = self::get( '/wp-json/rtet-plugin-test/v1/publish?transport=' . $transport . '&hold=' . $token );
			$this->assertSame( 200, $answer['status'], 'the publish was answered while its event waited' );
			$this->assertIsInt( $answer['body']['post'] );
			$this->assertSame( 'publish', get_post_status( $answer['body']['post'] ) );
			$this->assertSame( $published, self::relay_metric( 'rtet_events_published_total' ), 'nothing reached the relay yet' );
		} finally {
			flock( $lock, LOCK_UN );
			fclose( $lock );
			unlink( $file );
		}
		self::eventually(
			static fn() => self::relay_metric( 'rtet_events_published_total' ) > $published,
			'the relay has the post_published event'
		);
		$this->assertSame( $published + 1, self::relay_metric( 'rtet_events_published_total' ) );
		$this->assertSame( $duplicates, self::relay_metric( 'rtet_duplicates_total' ), 'sent once' );
		$this->assertSame( 0, RTET_Queue::size() );
	}

	/**
	 * An event a request sends after publishing a post reaches the transport after the post's.
	 *
	 * @dataProvider transports
	 * @param string $transport 'http' or 'extension'.
	 */
	public function test_an_event_sent_after_a_publish_in_the_same_request_follows_the_posts_event( $transport ) {
		if ( 'extension' === $transport && ! extension_loaded( 'rtet' ) ) {
			$this->markTestSkipped( 'rtet.so is not built, so php-fpm runs without it' );
		}
		$record = bin2hex( random_bytes( 8 ) );
		$answer = self::get( '/wp-json/rtet-plugin-test/v1/publish?transport=' . $transport . '&then=plugin_test&record=' . $record );
		$this->assertSame( 200, $answer['status'] );
		$sent = static function () use ( $record ) {
			wp_cache_delete( 'rtet_test_sent_' . $record, 'options' );
			wp_cache_delete( 'notoptions', 'options' );
			return (array) get_option( 'rtet_test_sent_' . $record, array() );
		};
		self::eventually( static fn() => count( $sent() ) >= 2, 'both events were handed to the transport' );
		$got = $sent();
		delete_option( 'rtet_test_sent_' . $record );
		$this->assertSame( array( 'post_published', 'plugin_test' ), $got );
	}

	public function test_a_post_published_while_the_relay_is_down_reaches_it_once_and_only_once_it_is_back() {
		$this->relay_down();
		$answer = self::get( '/wp-json/rtet-plugin-test/v1/publish?transport=http' );
		$this->assertSame( 200, $answer['status'] );
		// The worker tried after the answer, found the relay down, and kept the event.
		self::eventually( static fn() => 1 === RTET_Queue::size(), 'the event waits in the retry queue' );
		wp_cache_flush(); // the worker wrote the cron option: read it afresh
		$this->assertNotFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ), 'WP-Cron will retry' );

		$this->set_settings( array( 'websocket_server_url' => getenv( 'RTET_RELAY_URL' ) ) );
		$published  = self::relay_metric( 'rtet_events_published_total' );
		$duplicates = self::relay_metric( 'rtet_duplicates_total' );
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( $published + 1, self::relay_metric( 'rtet_events_published_total' ) );
		$this->assertSame( 0, RTET_Queue::size() );

		// Another retry, and the next publish's flush, send nothing of it again.
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( 0, RTET_Sender::flush( true ) );
		$this->assertSame( $published + 1, self::relay_metric( 'rtet_events_published_total' ) );
		$this->assertSame( $duplicates, self::relay_metric( 'rtet_duplicates_total' ), 'never sent twice' );
	}

	/**
	 * wp-cron.php writes back the cron array it read when it started, so a
	 * retry planned by a request meanwhile is dropped (WordPress's own race).
	 * The next WP-Cron run plans it again, and the event still arrives.
	 */
	public function test_a_retry_dropped_by_a_concurrent_cron_run_is_planned_again_by_the_next_one() {
		$this->relay_down();
		$answer = self::get( '/wp-json/rtet-plugin-test/v1/publish?transport=http' );
		$this->assertSame( 200, $answer['status'] );
		self::eventually( static fn() => 1 === RTET_Queue::size(), 'the event waits in the retry queue' );

		// What a wp-cron.php that started before the publish writes: the plan without the retry.
		wp_cache_flush();
		wp_clear_scheduled_hook( RTET_Sender::RETRY_HOOK );
		$this->assertFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ) );

		$this->assertSame( 200, self::get( '/wp-cron.php' )['status'] );
		self::eventually(
			static function () {
				wp_cache_flush();
				return false !== wp_next_scheduled( RTET_Sender::RETRY_HOOK );
			},
			'the next WP-Cron run plans the retry again'
		);

		$this->set_settings( array( 'websocket_server_url' => getenv( 'RTET_RELAY_URL' ) ) );
		$published = self::relay_metric( 'rtet_events_published_total' );
		do_action( RTET_Sender::RETRY_HOOK );
		$this->assertSame( $published + 1, self::relay_metric( 'rtet_events_published_total' ) );
		$this->assertSame( 0, RTET_Queue::size() );
	}
}
