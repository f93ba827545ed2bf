<?php
/**
 * What every plugin test shares: the site's settings restored after each
 * test, the HTTP fallback on demand, the relay's metrics, real users and
 * parallel HTTP requests to the site.
 *
 * @package real-time-event-trigger
 */

use PHPUnit\Framework\TestCase;

/**
 * Base class of the plugin's tests.
 */
abstract class RTET_Test_Case extends TestCase {

	/**
	 * The settings before the test.
	 *
	 * @var array
	 */
	private $saved_settings;

	/**
	 * Filters added by the test: [hook, callback, priority].
	 *
	 * @var array[]
	 */
	private $filters = array();

	protected function setUp(): void {
		$this->saved_settings = get_option( RTET_Settings::OPTION );
		wp_set_current_user( 0 );
		$GLOBALS['wp_settings_errors'] = array();
	}

	protected function tearDown(): void {
		foreach ( $this->filters as $f ) {
			remove_filter( $f[0], $f[1], $f[2] );
		}
		$this->filters = array();
		self::write_settings( $this->saved_settings );
		delete_transient( RTET_Sender::SLOW_TRANSIENT );
		wp_set_current_user( 0 );
	}

	/**
	 * Adds a filter for this test only.
	 *
	 * @param string   $hook     Hook.
	 * @param callable $callback Callback.
	 * @param int      $priority Priority.
	 * @param int      $args     Accepted arguments.
	 */
	protected function filter( $hook, $callback, $priority = 10, $args = 1 ) {
		add_filter( $hook, $callback, $priority, $args );
		$this->filters[] = array( $hook, $callback, $priority );
	}

	/** The plugin sends over HTTP (`POST /api/send-event`) in this test, extension or not. */
	protected function use_http_fallback() {
		$this->filter( 'rtet_use_extension', '__return_false' );
	}

	/**
	 * Changes stored settings (as an option write, not through the form).
	 *
	 * @param array $changes Keys to set.
	 */
	protected function set_settings( array $changes ) {
		self::write_settings( array_merge( RTET_Settings::get(), $changes ) );
	}

	/**
	 * Stores the settings as they are, past the form's sanitize callback (as a site's own code or an old version might).
	 *
	 * @param mixed $settings Settings.
	 */
	private static function write_settings( $settings ) {
		remove_all_filters( 'sanitize_option_' . RTET_Settings::OPTION );
		update_option( RTET_Settings::OPTION, $settings );
	}

	/**
	 * A loopback port nothing listens on (a relay that is down).
	 *
	 * @return int
	 */
	protected static function unused_port() {
		$s = stream_socket_server( 'tcp://127.0.0.1:0' );
		$name = stream_socket_get_name( $s, false );
		fclose( $s );
		return (int) substr( strrchr( $name, ':' ), 1 );
	}

	/** Points the plugin at a relay that is down. */
	protected function relay_down() {
		$this->set_settings( array( 'websocket_server_url' => 'ws://127.0.0.1:' . self::unused_port() ) );
	}

	/**
	 * One counter of the relay's /metrics (summed over labels).
	 *
	 * @param string $name Metric name.
	 * @return int
	 */
	protected static function relay_metric( $name ) {
		$text = file_get_contents( getenv( 'RTET_RELAY_HTTP' ) . '/metrics' ); // phpcs:ignore
		self::assertIsString( $text, 'the relay answers /metrics' );
		$sum   = 0;
		$found = false;
		foreach ( explode( "\n", $text ) as $line ) {
			if ( preg_match( '/^' . preg_quote( $name, '/' ) . '(\{[^}]*\})? (\d+)$/', $line, $m ) ) {
				$sum  += (int) $m[2];
				$found = true;
			}
		}
		self::assertTrue( $found, "$name is in the relay's /metrics" );
		return $sum;
	}

	/**
	 * A new user with a role.
	 *
	 * @param string $role Role.
	 * @return WP_User
	 */
	protected static function create_user( $role ) {
		$login = 'u' . bin2hex( random_bytes( 5 ) );
		$id    = wp_insert_user(
			array(
				'user_login' => $login,
				'user_pass'  => wp_generate_password( 20 ),
				'user_email' => $login . '@example.test',
				'role'       => $role,
			)
		);
		self::assertIsInt( $id, 'the user was created' );
		return get_userdata( $id );
	}

	/**
	 * GET requests to the site, all at once; the decoded answers in order.
	 *
	 * @param string[] $paths Paths under the site URL.
	 * @return array[] Each: {status, body (decoded JSON or null)}.
	 */
	protected static function parallel_get( array $paths ) {
		$multi   = curl_multi_init();
		$handles = array();
		foreach ( $paths as $path ) {
			$h = curl_init( getenv( 'RTET_SITE_URL' ) . $path );
			curl_setopt_array( $h, array( CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT => 60 ) );
			curl_multi_add_handle( $multi, $h );
			$handles[] = $h;
		}
		do {
			$status = curl_multi_exec( $multi, $running );
			if ( $running ) {
				curl_multi_select( $multi, 1.0 );
			}
		} while ( $running && CURLM_OK === $status );
		$out = array();
		foreach ( $handles as $h ) {
			$out[] = array(
				'status' => (int) curl_getinfo( $h, CURLINFO_RESPONSE_CODE ),
				'body'   => json_decode( (string) curl_multi_getcontent( $h ), true ),
			);
			curl_multi_remove_handle( $multi, $h );
			curl_close( $h );
		}
		curl_multi_close( $multi );
		return $out;
	}
}
