<?php
/**
 * Subscriber tokens: HS256 JSON Web Tokens signed with the API key.
 *
 * The rtet extension signs them when it is loaded (`rtet_sign_token()`);
 * otherwise PHP does, with hash_hmac(). Both produce the same claims:
 * `sub`, `channels`, `iat`, `exp`, and, when given, the presence claims
 * (`presence`, `presence_counts`, `info`; docs/protocol.md "Presence") in
 * that order, left out when empty. When the extension refuses to sign, no
 * token is issued: the failure is logged and shown in Site Health and on the
 * settings page.
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

	/** Option holding the last signing failure ({time, message}) until a token is signed again. */
	const FAILURE_OPTION = 'rtet_signing_failure';

	/**
	 * The last signing failure, when no token was signed since.
	 *
	 * @return array{time: int, message: string}|null
	 */
	public static function last_failure() {
		$failure = get_option( self::FAILURE_OPTION, false );
		return is_array( $failure ) && isset( $failure['time'], $failure['message'] ) ? $failure : null;
	}

	/**
	 * Forgets the last signing failure once a token was signed (cheap when there is none).
	 */
	private static function clear_failure() {
		if ( false !== get_option( self::FAILURE_OPTION, false ) ) {
			delete_option( self::FAILURE_OPTION );
		}
	}

	/**
	 * Remembers a signing failure for Site Health and the settings page, and logs it.
	 *
	 * @param string $message What went wrong.
	 */
	private static function record_failure( $message ) {
		error_log( 'rtet: the token endpoint could not sign a token: ' . $message ); // phpcs:ignore WordPress.PHP.DevelopmentFunctions.error_log_error_log
		update_option(
			self::FAILURE_OPTION,
			array(
				'time'    => time(),
				'message' => (string) $message,
			),
			false
		);
	}

	/**
	 * Signs a token for `$channels`.
	 *
	 * @param string[] $channels Channels the holder may subscribe to.
	 * @param string   $subject  Who holds it (a user ID, or '' for a visitor).
	 * @param int      $ttl      Lifetime in seconds.
	 * @param array    $presence Presence claims: `presence`, `presence_counts` (channel lists), `info` ({name, avatar}).
	 * @return array{token: string, expires: int}|WP_Error
	 */
	public static function issue( array $channels, $subject = '', $ttl = self::TTL, array $presence = array() ) {
		$key = (string) RTET_Settings::value( 'api_key' );
		if ( null !== RTET_Settings::key_problem() ) {
			return new WP_Error( 'rtet_not_configured', __( 'Real-time events are not configured.', 'real-time-event-trigger' ) );
		}
		$channels = array_values( array_unique( array_map( 'strval', $channels ) ) );
		$presence = self::presence_claims( $presence );
		$now      = time();

		if ( RTET_Sender::extension_available() && function_exists( 'rtet_sign_token' ) ) {
			// No second signer behind the extension: a token it refuses to make would be refused by the relay too.
			try {
				RTET_Sender::configure_extension();
				$token = array() === $presence
					? rtet_sign_token( $channels, (string) $subject, (int) $ttl )
					: rtet_sign_token( $channels, (string) $subject, (int) $ttl, $presence );
			} catch ( Throwable $e ) {
				self::record_failure( $e->getMessage() );
				/* translators: %s: the extension's error message */
				return new WP_Error( 'rtet_signing_failed', sprintf( __( 'The rtet extension could not sign a token: %s', 'real-time-event-trigger' ), $e->getMessage() ) );
			}
			self::clear_failure();
			return array(
				'token'   => $token,
				'expires' => $now + (int) $ttl,
			);
		}

		$token = self::sign_hs256(
			array(
				'sub'      => (string) $subject,
				'channels' => $channels,
				'iat'      => $now,
				'exp'      => $now + (int) $ttl,
			) + $presence,
			$key
		);
		if ( strlen( $token ) > RTET_Protocol::MAX_TOKEN_BYTES ) {
			$message = sprintf( 'the token is %d bytes; the relay accepts at most %d: grant fewer channels', strlen( $token ), RTET_Protocol::MAX_TOKEN_BYTES );
			self::record_failure( $message );
			/* translators: %s: why */
			return new WP_Error( 'rtet_signing_failed', sprintf( __( 'No token was signed: %s', 'real-time-event-trigger' ), $message ) );
		}
		self::clear_failure();
		return array(
			'token'   => $token,
			'expires' => $now + (int) $ttl,
		);
	}

	/**
	 * The presence claims in the signers' order (`presence`, `presence_counts`,
	 * `info` with `name` then `avatar`), each left out when empty, so a token
	 * without presence is byte for byte the same as one from before presence.
	 *
	 * @param array $presence {presence?: string[], presence_counts?: string[], info?: array{name?: string, avatar?: string}}
	 * @return array
	 */
	private static function presence_claims( array $presence ) {
		$claims = array();
		foreach ( array( 'presence', 'presence_counts' ) as $name ) {
			$list = array_values( array_unique( array_map( 'strval', (array) ( $presence[ $name ] ?? array() ) ) ) );
			if ( array() !== $list ) {
				$claims[ $name ] = $list;
			}
		}
		$info = array();
		foreach ( array( 'name', 'avatar' ) as $name ) {
			if ( isset( $presence['info'][ $name ] ) && '' !== (string) $presence['info'][ $name ] ) {
				$info[ $name ] = (string) $presence['info'][ $name ];
			}
		}
		if ( array() !== $info ) {
			$claims['info'] = $info;
		}
		return $claims;
	}

	/**
	 * What other members of a presence channel see of a user: the display
	 * name (control characters removed, cut to the relay's limit) and the
	 * avatar URL when it is http(s) and within the relay's limit. Nothing else.
	 *
	 * @param WP_User $user The user.
	 * @return array{name?: string, avatar?: string}
	 */
	public static function member_info( WP_User $user ) {
		$info = array();
		$name = trim( (string) preg_replace( '/[\x{0000}-\x{001F}\x{007F}-\x{009F}]+/u', ' ', (string) $user->display_name ) );
		if ( '' !== $name ) {
			$info['name'] = mb_substr( $name, 0, RTET_Protocol::MEMBER_NAME_MAX_CHARS, 'UTF-8' );
		}
		$avatar = get_avatar_url( $user->ID, array( 'size' => 48 ) );
		if ( is_string( $avatar ) && preg_match( '#^https?://[^\s]+$#iD', $avatar ) && strlen( $avatar ) <= RTET_Protocol::MEMBER_AVATAR_MAX_BYTES ) {
			$info['avatar'] = $avatar;
		}
		return $info;
	}

	/**
	 * Signs claims as an HS256 JWT in plain PHP.
	 *
	 * @param array  $claims Claims.
	 * @param string $key    Secret.
	 * @return string
	 */
	public static function sign_hs256( array $claims, $key ) {
		// The exact bytes of the extension's signer (tests/protocol-vectors/tokens.json).
		$header  = self::b64url( '{"typ":"JWT","alg":"HS256"}' );
		$payload = self::b64url( (string) wp_json_encode( $claims, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE ) );
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
