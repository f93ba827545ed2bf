<?php
/**
 * The plugin's copy of the relay protocol's rules (docs/protocol.md): names,
 * limits, keys and relay URLs. Every other class asks this one.
 *
 * The rules are defined in the Rust crate `rtet-protocol`; the plugin's tests
 * (tests/plugin) check each rule here against the shared vectors in
 * tests/protocol-vectors, so a rule that changes there fails here until this
 * copy follows.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Protocol rules.
 */
class RTET_Protocol {

	/** Channel names: 1-128 of [A-Za-z0-9_.:@-]. */
	const CHANNEL_PATTERN = '/^[A-Za-z0-9_.:@-]{1,128}$/D';

	/** Event names: 1-64 of [A-Za-z0-9_.:-]. */
	const EVENT_PATTERN = '/^[A-Za-z0-9_.:-]{1,64}$/D';

	/** Event ids: 1-64 of [A-Za-z0-9_.:-]. */
	const ID_PATTERN = '/^[A-Za-z0-9_.:-]{1,64}$/D';

	/** The largest frame or HTTP publish body the relay takes by default, in bytes. */
	const MAX_FRAME_BYTES = 65536;

	/** The shortest API key the relay accepts. */
	const MIN_KEY_LENGTH = 32;

	/**
	 * Parts of keys copied from examples and never changed (compared without
	 * case, ignoring `-` and `_`): such a key is public, whatever its length.
	 */
	const PLACEHOLDER_PARTS = array( 'changeme', 'replaceme', 'yourkey', 'yourapikey', 'example', 'placeholder', 'secret', 'password', 'xxxxxxxx' );

	/** The longest run of one repeated character a key may hold. */
	const MAX_REPEAT = 7;

	/**
	 * Whether a channel name follows the protocol.
	 *
	 * @param mixed $name Name.
	 * @return bool
	 */
	public static function is_channel( $name ) {
		return is_string( $name ) && 1 === preg_match( self::CHANNEL_PATTERN, $name );
	}

	/**
	 * Whether an event name follows the protocol.
	 *
	 * @param mixed $name Name.
	 * @return bool
	 */
	public static function is_event( $name ) {
		return is_string( $name ) && 1 === preg_match( self::EVENT_PATTERN, $name );
	}

	/**
	 * Whether an event id follows the protocol.
	 *
	 * @param mixed $id Id.
	 * @return bool
	 */
	public static function is_id( $id ) {
		return is_string( $id ) && 1 === preg_match( self::ID_PATTERN, $id );
	}

	/**
	 * Why an API key is refused, or null when it is good.
	 *
	 * @param string $key Key.
	 * @return string|null
	 */
	public static function key_problem( $key ) {
		$key = (string) $key;
		if ( strlen( $key ) < self::MIN_KEY_LENGTH ) {
			/* translators: %d: minimum number of characters */
			return sprintf( __( 'The API key must be at least %d characters.', 'real-time-event-trigger' ), self::MIN_KEY_LENGTH );
		}
		if ( preg_match( '/[^\x21-\x7e]/', $key ) ) {
			return __( 'The API key must be printable ASCII without spaces.', 'real-time-event-trigger' );
		}
		$folded = str_replace( array( '-', '_' ), '', strtolower( $key ) );
		foreach ( self::PLACEHOLDER_PARTS as $part ) {
			if ( false !== strpos( $folded, $part ) ) {
				/* translators: %s: the placeholder text found in the key */
				return sprintf( __( 'The API key contains "%s": it looks like an example key. Make one with: openssl rand -hex 32', 'real-time-event-trigger' ), $part );
			}
		}
		if ( preg_match( '/(.)\1{' . self::MAX_REPEAT . ',}/', $key ) ) {
			return __( 'The API key repeats one character too often to be random. Make one with: openssl rand -hex 32', 'real-time-event-trigger' );
		}
		return null;
	}

	/**
	 * Whether a URL is an absolute ws:// or wss:// URL with a host and no
	 * query or fragment.
	 *
	 * @param mixed $url URL to check.
	 * @return bool
	 */
	public static function is_relay_url( $url ) {
		if ( ! is_string( $url ) || preg_match( '/[\x00-\x20<>"\'\\\\`{}|^]/', $url ) ) {
			return false;
		}
		$parts = wp_parse_url( $url );
		return is_array( $parts )
			&& isset( $parts['scheme'], $parts['host'] )
			&& in_array( strtolower( $parts['scheme'] ), array( 'ws', 'wss' ), true )
			&& '' !== $parts['host']
			&& ! isset( $parts['query'] )
			&& ! isset( $parts['fragment'] )
			&& ! isset( $parts['user'] )
			&& ! isset( $parts['pass'] );
	}

	/**
	 * A relay URL with its endpoint path: `ws://h:1/` + `/ws` → `ws://h:1/ws`;
	 * a URL that already ends in an endpoint (`/ws`, `/publish`,
	 * `/api/send-event`) gets it replaced.
	 *
	 * @param string $url  Relay base URL.
	 * @param string $path Endpoint path, with its leading slash.
	 * @return string
	 */
	public static function with_path( $url, $path ) {
		return self::base( $url ) . $path;
	}

	/**
	 * The relay's HTTP base for a ws:// or wss:// URL (ws → http, wss → https).
	 *
	 * @param string $url Relay URL.
	 * @return string
	 */
	public static function http_base( $url ) {
		return (string) preg_replace( '#^ws(s?)://#i', 'http$1://', self::base( $url ) );
	}

	/**
	 * The relay URL without trailing slashes and without an endpoint path.
	 *
	 * @param string $url Relay URL.
	 * @return string
	 */
	private static function base( $url ) {
		$url = rtrim( (string) $url, '/' );
		return rtrim( (string) preg_replace( '#/(ws|publish|api/send-event)$#', '', $url ), '/' );
	}
}
