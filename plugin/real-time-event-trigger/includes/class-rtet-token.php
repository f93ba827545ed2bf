<?php
/**
 * Subscriber tokens: HS256 JSON Web Tokens signed with the API key.
 *
 * The rtet extension signs them when it is loaded (`rtet_sign_token()`);
 * otherwise PHP does, with hash_hmac(). Both produce the same claims:
 * `sub`, `channels`, `iat`, `exp`.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Issues subscriber tokens.
 */
class RTET_Token {

	/** How long a token lives, in seconds. */
	const TTL = 300;

	/** The shortest lifetime the token endpoint hands out (the end-to-end tests use it). */
	const MIN_TTL = 5;

	/**
	 * Signs a token for `$channels`.
	 *
	 * @param string[] $channels Channels the holder may subscribe to.
	 * @param string   $subject  Who holds it (a user ID, or '' for a visitor).
	 * @param int      $ttl      Lifetime in seconds.
	 * @return array{token: string, expires: int}|WP_Error
	 */
	public static function issue( array $channels, $subject = '', $ttl = self::TTL ) {
		$key = (string) RTET_Settings::value( 'api_key' );
		if ( '' === $key ) {
			return new WP_Error( 'rtet_not_configured', __( 'Real-time events are not configured.', 'real-time-event-trigger' ) );
		}
		$channels = array_values( array_unique( array_map( 'strval', $channels ) ) );
		$now      = time();

		if ( RTET_Sender::extension_available() && function_exists( 'rtet_sign_token' ) ) {
			try {
				RTET_Sender::configure_extension();
				$token = rtet_sign_token( $channels, (string) $subject, (int) $ttl );
				return array(
					'token'   => $token,
					'expires' => $now + (int) $ttl,
				);
			} catch ( Throwable $e ) {
				// Fall through to signing in PHP.
				unset( $e );
			}
		}

		return array(
			'token'   => self::sign_hs256(
				array(
					'sub'      => (string) $subject,
					'channels' => $channels,
					'iat'      => $now,
					'exp'      => $now + (int) $ttl,
				),
				$key
			),
			'expires' => $now + (int) $ttl,
		);
	}

	/**
	 * Signs claims as an HS256 JWT in plain PHP.
	 *
	 * @param array  $claims Claims.
	 * @param string $key    Secret.
	 * @return string
	 */
	public static function sign_hs256( array $claims, $key ) {
		$header  = self::b64url( wp_json_encode( array( 'alg' => 'HS256', 'typ' => 'JWT' ) ) );
		$payload = self::b64url( wp_json_encode( $claims, JSON_UNESCAPED_SLASHES ) );
		$sig     = self::b64url( hash_hmac( 'sha256', $header . '.' . $payload, $key, true ) );
		return $header . '.' . $payload . '.' . $sig;
	}

	/**
	 * Base64url without padding.
	 *
	 * @param string $data Bytes.
	 * @return string
	 */
	private static function b64url( $data ) {
		return rtrim( strtr( base64_encode( $data ), '+/', '-_' ), '=' ); // phpcs:ignore WordPress.PHP.DiscouragedPHPFunctions.obfuscation_base64_encode
	}
}
