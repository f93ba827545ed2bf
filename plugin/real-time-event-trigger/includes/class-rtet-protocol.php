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

	/** The largest subscriber token the relay accepts, in bytes. */
	const MAX_TOKEN_BYTES = 4096;

	/** The longest `info.name` of a presence member, in characters. */
	const MEMBER_NAME_MAX_CHARS = 64;

	/** The longest `info.avatar` URL of a presence member, in bytes. */
	const MEMBER_AVATAR_MAX_BYTES = 512;

	/** The shortest API key the relay accepts. */
	const MIN_KEY_LENGTH = 32;

	/**
	 * Parts of keys copied from examples and never changed (compared without
	 * case, ignoring `-` and `_`): such a key is public, whatever its length.
	 * The list is tests/protocol-vectors/keys.json's, which the relay shares.
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
	 * Whether a string is a relay URL the plugin can use.
	 *
	 * @param mixed $url URL to check.
	 * @return bool
	 */
	public static function is_relay_url( $url ) {
		return null !== self::parse_relay_url( $url );
	}

	/**
	 * Splits a relay URL into its WebSocket origin and base path, or null when
	 * it is not one: a ws, wss, http or https URL (http maps to ws, https to
	 * wss) with a host, an optional port 1-65535 (the scheme's default port is
	 * dropped), no user info, query or fragment, and no spaces, control
	 * characters, quotes, angle brackets or backslashes. Scheme and host are
	 * lower-cased, surrounding whitespace is trimmed, and a trailing endpoint
	 * (`/ws`, `/publish`, `/api/send-event`) and trailing slashes are removed.
	 *
	 * @param mixed $url Relay URL.
	 * @return array{ws: string, base: string}|null `ws`: scheme://host[:port]; `base`: the path before the endpoint.
	 */
	public static function parse_relay_url( $url ) {
		if ( ! is_string( $url ) ) {
			return null;
		}
		$url = trim( $url, " \t\n\r\0\x0B" );
		if ( '' === $url || preg_match( '/[^\x21-\x7e]|[<>"\'\\\\`{}|^]/', $url ) ) {
			return null;
		}
		if ( ! preg_match( '#^([A-Za-z][A-Za-z0-9+.-]*)://([^/?\#]*)([^?\#]*)$#D', $url, $m ) ) {
			return null;
		}
		$schemes = array(
			'ws'    => 'ws',
			'http'  => 'ws',
			'wss'   => 'wss',
			'https' => 'wss',
		);
		$scheme  = $schemes[ strtolower( $m[1] ) ] ?? null;
		if ( null === $scheme || false !== strpos( $m[2], '@' ) ) {
			return null;
		}
		if ( ! preg_match( '#^(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]+))?$#D', $m[2], $a ) ) {
			return null;
		}
		$host = strtolower( $a[1] );
		$port = isset( $a[2] ) ? (int) $a[2] : null;
		if ( null !== $port && ( $port < 1 || $port > 65535 ) ) {
			return null;
		}
		$default = 'ws' === $scheme ? 80 : 443;
		$origin  = $scheme . '://' . $host . ( null === $port || $default === $port ? '' : ':' . $port );
		$path    = rtrim( $m[3], '/' );
		$path    = rtrim( (string) preg_replace( '#/(ws|publish|api/send-event)$#D', '', $path ), '/' );
		return array(
			'ws'   => $origin,
			'base' => $path,
		);
	}

	/**
	 * A relay URL with an endpoint path: `ws://h:1/` + `/ws` → `ws://h:1/ws`;
	 * a URL that already ends in an endpoint gets it replaced. '' for a URL
	 * that is not a relay URL.
	 *
	 * @param string $url  Relay URL.
	 * @param string $path Endpoint path, with its leading slash.
	 * @return string
	 */
	public static function with_path( $url, $path ) {
		$parsed = self::parse_relay_url( $url );
		return null === $parsed ? '' : $parsed['ws'] . $parsed['base'] . $path;
	}

	/**
	 * The relay's HTTP base (ws → http, wss → https), without a trailing slash;
	 * '' for a URL that is not a relay URL.
	 *
	 * @param string $url Relay URL.
	 * @return string
	 */
	public static function http_base( $url ) {
		$parsed = self::parse_relay_url( $url );
		return null === $parsed ? '' : (string) preg_replace( '#^ws#', 'http', $parsed['ws'] ) . $parsed['base'];
	}
}
