<?php
/**
 * The settings form's validation (RTET_Settings::sanitize, the Settings API's
 * sanitize callback) as an administrator sees it: what is stored and which
 * error notices settings_errors() prints.
 *
 * @package real-time-event-trigger
 */

/**
 * Settings validation.
 */
class SettingsTest extends RTET_Test_Case {

	/**
	 * Submits the settings form the way options.php does (update_option through the registered sanitize callback).
	 *
	 * @param array $fields Submitted fields.
	 * @return string What settings_errors() prints on the next page.
	 */
	private function submit( array $fields ) {
		RTET_Admin::register_settings();
		update_option( RTET_Settings::OPTION, array_merge( array( '_form' => '1' ), $fields ) );
		ob_start();
		settings_errors( RTET_Settings::OPTION );
		return (string) ob_get_clean();
	}

	public function test_a_ws_url_and_a_random_key_are_stored() {
		$key    = bin2hex( random_bytes( 24 ) );
		$notice = $this->submit(
			array(
				'websocket_server_url' => 'wss://relay.example.test/rtet/',
				'api_key'              => $key,
				'events'               => array( 'post_published' ),
			)
		);
		$this->assertSame( '', $notice );
		$this->assertSame( 'wss://relay.example.test/rtet/', RTET_Settings::server_url() );
		$this->assertSame( $key, RTET_Settings::value( 'api_key' ) );
		$this->assertSame( array( 'post_published' ), RTET_Settings::value( 'events' ) );
		$this->assertFalse( RTET_Settings::value( 'toasts' ), 'an unticked box is stored as off' );
	}

	public function test_the_readers_badge_is_off_by_default_and_switched_on_by_its_box_on_the_settings_page() {
		$this->assertFalse( RTET_Settings::defaults()['readers_badge'] );
		ob_start();
		RTET_Admin::field_display();
		$html = (string) ob_get_clean();
		$this->assertMatchesRegularExpression( '/<input type="checkbox" name="' . preg_quote( RTET_Settings::OPTION, '/' ) . '\[readers_badge\]" value="1"\s*\/>/', $html, 'an unticked box' );
		$this->assertStringContainsString( 'never who', $html );
		$this->submit( array( 'readers_badge' => '1' ) );
		$this->assertTrue( RTET_Settings::value( 'readers_badge' ) );
		ob_start();
		RTET_Admin::field_display();
		$this->assertStringContainsString( 'name="' . RTET_Settings::OPTION . "[readers_badge]\" value=\"1\"  checked='checked'", (string) ob_get_clean() );
		$this->submit( array() );
		$this->assertFalse( RTET_Settings::value( 'readers_badge' ), 'unticked, it is off again' );
	}

	public function test_a_rejected_relay_url_keeps_the_old_value_and_is_shown_escaped() {
		$before = RTET_Settings::server_url();
		$attack = 'http://x/"><script>alert(1)</script>';
		$notice = $this->submit( array( 'websocket_server_url' => $attack ) );
		$this->assertSame( $before, RTET_Settings::server_url() );
		$this->assertStringContainsString( 'must be a ws:// or wss:// URL', $notice );
		$this->assertStringNotContainsString( '<script>', $notice );
		$this->assertStringContainsString( '&lt;script&gt;alert(1)&lt;/script&gt;', $notice );
	}

	public function test_urls_that_are_not_ws_are_refused() {
		$before = RTET_Settings::server_url();
		foreach ( array( 'ftp://127.0.0.1:8090', 'ws://', 'ws://h/ws?token=1', 'ws://user:pw@h/', 'javascript:alert(1)', 'ws://h /x' ) as $url ) {
			$GLOBALS['wp_settings_errors'] = array();
			$notice                        = $this->submit( array( 'websocket_server_url' => $url ) );
			$this->assertStringContainsString( 'must be a ws:// or wss:// URL', $notice, $url );
			$this->assertSame( $before, RTET_Settings::server_url(), $url );
		}
	}

	public function test_an_empty_browser_url_means_the_server_url() {
		$this->submit( array( 'public_url' => '' ) );
		$this->assertSame( RTET_Settings::with_path( RTET_Settings::server_url(), '/ws' ), RTET_Settings::browser_url() );
	}

	public function test_a_short_key_is_refused_and_the_stored_key_stays() {
		$notice = $this->submit( array( 'api_key' => str_repeat( 'ab', 15 ) ) );
		$this->assertStringContainsString( 'at least 32 characters', $notice );
		$this->assertSame( getenv( 'RTET_API_KEY' ), RTET_Settings::value( 'api_key' ) );
	}

	public function test_a_blank_key_keeps_the_stored_key() {
		$this->assertSame( '', $this->submit( array( 'api_key' => '' ) ) );
		$this->assertSame( getenv( 'RTET_API_KEY' ), RTET_Settings::value( 'api_key' ) );
	}

	public function test_placeholder_keys_are_refused_however_long() {
		foreach ( array(
			'CHANGE-ME-use-openssl-rand-hex-32-to-make-one',
			'changeme-changeme-changeme-changeme',
			'this-is-my-example-key-for-the-rtet-relay',
			str_repeat( 'a', 64 ),
			'0123456789abcdef' . str_repeat( '0', 24 ),
		) as $key ) {
			$GLOBALS['wp_settings_errors'] = array();
			$notice                        = $this->submit( array( 'api_key' => $key ) );
			$this->assertStringContainsString( 'The previous key was kept', $notice, $key );
			$this->assertSame( getenv( 'RTET_API_KEY' ), RTET_Settings::value( 'api_key' ), $key );
		}
	}

	public function test_a_stored_placeholder_key_is_not_used() {
		// A site that followed the example config and wrote the option directly.
		$this->set_settings( array( 'api_key' => 'CHANGE-ME-use-openssl-rand-hex-32-to-make-one' ) );
		$this->assertFalse( RTET_Settings::is_configured() );
		$this->assertStringContainsString( 'example key', (string) RTET_Settings::key_problem() );
		$result = rtet_trigger_event( 'plugin_test', array(), 'public' );
		$this->assertInstanceOf( WP_Error::class, $result );
		$this->assertSame( 'rtet_not_configured', $result->get_error_code() );
		$this->assertSame( 503, rest_do_request( new WP_REST_Request( 'GET', '/rtet/v1/token' ) )->get_status() );
	}

	public function test_an_upgrade_switches_the_new_events_on_where_every_old_one_was_on_and_only_there() {
		$old = RTET_Settings::get();
		unset( $old['version'] );
		update_option( RTET_Settings::OPTION, array_merge( $old, array( 'events' => RTET_Settings::FIRST_EVENTS ) ) );
		RTET_Plugin::upgrade();
		$this->assertSame( RTET_Settings::BUILT_IN_EVENTS, RTET_Settings::value( 'events' ) );
		$this->assertSame( RTET_Settings::VERSION, RTET_Settings::value( 'version' ) );

		update_option( RTET_Settings::OPTION, array_merge( $old, array( 'events' => array( 'post_published' ) ) ) );
		RTET_Plugin::upgrade();
		$this->assertSame( array( 'post_published' ), RTET_Settings::value( 'events' ), 'a site that chose stays as it chose' );

		// Once upgraded, switching events off stays off.
		$this->set_settings( array( 'events' => RTET_Settings::FIRST_EVENTS ) );
		RTET_Plugin::upgrade();
		$this->assertSame( RTET_Settings::FIRST_EVENTS, RTET_Settings::value( 'events' ) );
	}
}
