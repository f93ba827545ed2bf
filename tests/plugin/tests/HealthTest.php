<?php
/**
 * Site Health's tests and Info section, and the settings page's status box:
 * what a site owner reads about the link to the relay, in words, and never
 * the API key.
 *
 * @package real-time-event-trigger
 */

/**
 * Site Health and the status box.
 */
class HealthTest extends RTET_Test_Case {

	protected function setUp(): void {
		parent::setUp();
		delete_option( RTET_Status::OPTION );
		RTET_Queue::install();
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
	}

	protected function tearDown(): void {
		global $wpdb;
		$wpdb->query( 'DELETE FROM ' . RTET_Queue::table() ); // phpcs:ignore
		delete_option( RTET_Status::OPTION );
		parent::tearDown();
	}

	/**
	 * Runs one of the plugin's Site Health tests as Site Health does.
	 *
	 * @param string $name Test name.
	 * @return array
	 */
	private static function run_test( $name ) {
		$tests = apply_filters( 'site_status_tests', array( 'direct' => array(), 'async' => array() ) );
		self::assertArrayHasKey( $name, $tests['direct'] );
		$result = call_user_func( $tests['direct'][ $name ]['test'] );
		self::assertSame( $name, $result['test'] );
		self::assertContains( $result['status'], array( 'good', 'recommended', 'critical' ) );
		return $result;
	}

	/**
	 * The status box's HTML, as the settings page prints it.
	 *
	 * @return string
	 */
	private static function status_box() {
		$render = new ReflectionMethod( 'RTET_Admin', 'render_status' );
		$render->setAccessible( true );
		ob_start();
		$render->invoke( null );
		return (string) ob_get_clean();
	}

	/**
	 * A row of the status box as text.
	 *
	 * @param string $html The box.
	 * @param string $id   Row id.
	 * @return string
	 */
	private static function row( $html, $id ) {
		self::assertMatchesRegularExpression( '#<tr id="' . $id . '">.*?</tr>#s', $html );
		preg_match( '#<tr id="' . $id . '">.*?<td>(.*?)</td></tr>#s', $html, $m );
		return html_entity_decode( $m[1], ENT_QUOTES, 'UTF-8' );
	}

	public function test_the_relay_test_is_good_when_it_answers_and_critical_with_what_to_do_when_not() {
		$this->assertSame( 'good', self::run_test( 'rtet_relay' )['status'] );
		$this->relay_down();
		$result = self::run_test( 'rtet_relay' );
		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( 'Check that rtet-relay is running', $result['description'] );
	}

	public function test_the_transport_test_recommends_the_extension_when_the_fallback_is_used() {
		$this->use_http_fallback();
		$result = self::run_test( 'rtet_transport' );
		$this->assertSame( 'recommended', $result['status'] );
		$this->assertStringContainsString( 'Install rtet.so', $result['description'] );
		if ( function_exists( 'rtet_version' ) ) {
			$this->filter( 'rtet_use_extension', '__return_true', 20 );
			$result = self::run_test( 'rtet_transport' );
			$this->assertSame( 'good', $result['status'] );
			$this->assertStringContainsString( rtet_version(), $result['description'] );
		}
	}

	public function test_the_key_test_is_critical_for_a_missing_short_or_example_key() {
		$this->assertSame( 'good', self::run_test( 'rtet_key' )['status'] );
		foreach ( array( '', 'short', 'changeme-changeme-changeme-changeme-0123' ) as $key ) {
			$this->set_settings( array( 'api_key' => $key ) );
			$this->assertSame( 'critical', self::run_test( 'rtet_key' )['status'], "key \"$key\"" );
		}
	}

	public function test_an_https_site_needs_a_wss_relay_url_for_browsers() {
		$this->assertSame( 'good', self::run_test( 'rtet_secure_socket' )['status'], 'an http:// site may use ws://' );
		$this->filter(
			'home_url',
			static function ( $url ) {
				return set_url_scheme( $url, 'https' );
			}
		);
		$this->set_settings( array( 'public_url' => 'ws://relay.example.test' ) );
		$result = self::run_test( 'rtet_secure_socket' );
		$this->assertSame( 'critical', $result['status'] );
		$this->assertStringContainsString( 'wss://', $result['description'] );
		$this->set_settings( array( 'public_url' => 'wss://relay.example.test' ) );
		$this->assertSame( 'good', self::run_test( 'rtet_secure_socket' )['status'] );
	}

	public function test_the_queue_test_counts_waiting_events_and_is_critical_when_the_queue_is_full() {
		$this->use_http_fallback();
		$this->assertSame( 'good', self::run_test( 'rtet_queue' )['status'] );
		$this->relay_down();
		for ( $i = 0; $i < 3; $i++ ) {
			rtet_trigger_event( 'plugin_test', array( 'n' => $i ), 'plugin-health' );
		}
		RTET_Sender::flush();
		$result = self::run_test( 'rtet_queue' );
		$this->assertSame( 'recommended', $result['status'] );
		$this->assertStringContainsString( '3 events wait', $result['description'] );
		$this->assertStringContainsString( 'Check that rtet-relay is running', $result['description'] );

		$items = array();
		for ( $i = 0; $i < RTET_Sender::PENDING_MAX; $i++ ) {
			$items[] = array(
				'id'       => 'h' . $i,
				'event'    => 'plugin_test',
				'data'     => null,
				'channels' => array( 'plugin-health' ),
				'time'     => time(),
			);
		}
		RTET_Queue::push( $items );
		$this->assertSame( 'critical', self::run_test( 'rtet_queue' )['status'] );
	}

	public function test_the_info_section_shows_transport_urls_versions_and_stats_and_never_the_key() {
		$info   = apply_filters( 'debug_information', array() );
		$fields = $info['real-time-event-trigger']['fields'];
		$this->assertSame( RTET_Settings::server_url(), $fields['relay_url']['value'] );
		$this->assertSame( RTET_Settings::browser_url(), $fields['browser_url']['value'] );
		$this->assertSame( RTET_PLUGIN_VERSION, $fields['plugin_version']['value'] );
		$this->assertSame( RTET_Sender::transport(), $fields['transport']['debug'] );
		if ( RTET_Sender::extension_available() ) {
			$this->assertSame( rtet_version(), $fields['extension_version']['value'] );
			$this->assertArrayHasKey( 'stats_connected', $fields );
			$this->assertArrayHasKey( 'stats_queued', $fields );
		}
		$this->assertTrue( $fields['api_key']['private'], 'left out of the copied report' );
	}

	public function test_no_test_no_info_field_and_no_status_box_ever_shows_the_key() {
		$key = getenv( 'RTET_API_KEY' );
		$this->assertSame( $key, RTET_Settings::value( 'api_key' ) );
		wp_set_current_user( self::create_user( 'administrator' )->ID );
		$seen = array();
		foreach ( array( true, false ) as $relay_up ) {
			if ( ! $relay_up ) {
				$this->relay_down();
			}
			foreach ( array( 'rtet_relay', 'rtet_transport', 'rtet_key', 'rtet_secure_socket', 'rtet_queue', 'rtet_token_signing' ) as $name ) {
				$seen[] = wp_json_encode( self::run_test( $name ) );
			}
			$seen[] = wp_json_encode( apply_filters( 'debug_information', array() ) );
			$seen[] = self::status_box();
		}
		foreach ( $seen as $text ) {
			$this->assertStringNotContainsString( $key, $text );
			$this->assertStringNotContainsString( substr( $key, 0, 12 ), $text );
		}
	}

	public function test_the_status_box_says_in_words_whether_it_works_since_when_and_what_to_do() {
		$this->use_http_fallback();
		$html = self::status_box();
		$this->assertStringContainsString( 'Working: events reach the relay', $html );
		$this->assertStringContainsString( 'connected since', self::row( $html, 'rtet-status-relay' ) );
		$this->assertSame( 'None: every event was delivered.', self::row( $html, 'rtet-status-pending' ) );
		$this->assertSame( 'None so far.', self::row( $html, 'rtet-status-error' ) );
		$this->assertStringContainsString( '<details id="rtet-status-details"', $html );
		$this->assertSame( 'http', self::row( $html, 'rtet-status-raw-transport' ) );

		// The relay goes down while events are sent.
		$this->relay_down();
		rtet_trigger_event( 'plugin_test', null, 'plugin-health' );
		RTET_Sender::flush();
		$html = self::status_box();
		$this->assertStringContainsString( 'Something needs your attention', $html );
		$relay = self::row( $html, 'rtet-status-relay' );
		$this->assertStringStartsWith( 'Not reachable:', $relay );
		$this->assertMatchesRegularExpression( '/since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(.+ ago\)/', $relay );
		$this->assertStringContainsString( 'What to do: Check that rtet-relay is running', $relay );
		$this->assertStringStartsWith( '1 event waits to be delivered.', self::row( $html, 'rtet-status-pending' ) );
		$error = self::row( $html, 'rtet-status-error' );
		$this->assertMatchesRegularExpression( '/^The relay problem above, first seen \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(.+ ago\)\.$/', $error );
		$this->assertSame( '1', self::row( $html, 'rtet-status-raw-waiting' ) );
		$this->assertSame( 'false', self::row( $html, 'rtet-status-raw-relay_up' ) );

		// A relay that does not know the key says so, with what to do.
		$this->set_settings(
			array(
				'websocket_server_url' => getenv( 'RTET_RELAY_URL' ),
				'api_key'              => bin2hex( random_bytes( 24 ) ),
			)
		);
		RTET_Sender::flush( true );
		$this->assertStringContainsString( 'What to do: The relay does not know this site\'s API key', self::row( self::status_box(), 'rtet-status-error' ) );
	}
}
