<?php
/**
 * The plugin's channel names and who may subscribe to each: the one place
 * where a channel is tied to WordPress's own permissions.
 *
 * | channel              | who may subscribe                                   |
 * |----------------------|-----------------------------------------------------|
 * | `public`             | everyone                                            |
 * | `user.<ID>`          | that user                                           |
 * | `role.<role>`        | users with that role                                |
 * | `cap.<capability>`   | users with that capability, for an allow-list       |
 * | `post.<ID>`          | whoever may read that post (visitors: public posts) |
 * | `post.<ID>.editors`  | whoever may edit that post                          |
 *
 * Tokens grant `post.*` channels only for posts the page asked for. After
 * the `rtet_token_channels` filter has run, every channel of these families
 * is checked again, so no filter can make a token grant what
 * `current_user_can()` would refuse.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Channel names and grants.
 */
class RTET_Channels {

	/** Capabilities that have a `cap.<capability>` channel, unless filtered. */
	const CAPABILITIES = array( 'moderate_comments', 'edit_others_posts', 'manage_options', 'list_users' );

	/**
	 * The most posts one token asks channels for: each post can add two
	 * channels, and the relay allows 64 subscriptions per connection and 4 KiB per token.
	 */
	const MAX_POSTS = 20;

	/**
	 * The channel of one post's readers.
	 *
	 * @param int $post_id Post ID.
	 * @return string
	 */
	public static function post( $post_id ) {
		return 'post.' . (int) $post_id;
	}

	/**
	 * The channel of one post's editors (draft saves are not for readers).
	 *
	 * @param int $post_id Post ID.
	 * @return string
	 */
	public static function post_editors( $post_id ) {
		return 'post.' . (int) $post_id . '.editors';
	}

	/**
	 * The channel of a capability.
	 *
	 * @param string $capability Capability.
	 * @return string
	 */
	public static function cap( $capability ) {
		return 'cap.' . $capability;
	}

	/**
	 * The capabilities that have a channel.
	 *
	 * @return string[]
	 */
	public static function capabilities() {
		/**
		 * Filters the capabilities for which tokens grant `cap.<capability>` to users who have them.
		 *
		 * @param string[] $capabilities Default: moderate_comments, edit_others_posts, manage_options, list_users.
		 */
		$caps = (array) apply_filters( 'rtet_capability_channels', self::CAPABILITIES );
		return array_values( array_filter( array_map( 'strval', $caps ), static fn( $c ) => RTET_Protocol::is_channel( 'cap.' . $c ) ) );
	}

	/**
	 * Post IDs from a request: a list or a comma-separated string of positive
	 * integers; others are ignored, duplicates dropped, at most MAX_POSTS kept.
	 *
	 * @param mixed $raw Request value.
	 * @return int[]
	 */
	public static function parse_post_ids( $raw ) {
		if ( is_string( $raw ) ) {
			$raw = explode( ',', substr( $raw, 0, 1024 ) );
		}
		$ids = array();
		foreach ( is_array( $raw ) ? $raw : array() as $value ) {
			if ( ( is_int( $value ) || ( is_string( $value ) && ctype_digit( trim( $value ) ) ) ) && (int) $value > 0 ) {
				$ids[ (int) $value ] = true;
			}
			if ( count( $ids ) >= self::MAX_POSTS ) {
				break;
			}
		}
		return array_keys( $ids );
	}

	/**
	 * The channels a token grants.
	 *
	 * @param WP_User|null $user     The user, or null for a visitor.
	 * @param int[]        $post_ids Posts the page asked channels for.
	 * @return string[]
	 */
	public static function for_user( $user, array $post_ids = array() ) {
		$user     = $user instanceof WP_User && $user->exists() ? $user : null;
		$channels = array( 'public' );
		if ( $user ) {
			$channels[] = 'user.' . (int) $user->ID;
			foreach ( (array) $user->roles as $role ) {
				$channels[] = 'role.' . $role;
			}
			foreach ( self::capabilities() as $cap ) {
				if ( user_can( $user, $cap ) ) {
					$channels[] = self::cap( $cap );
				}
			}
		}
		foreach ( $post_ids as $post_id ) {
			$channels[] = self::post( $post_id );
			$channels[] = self::post_editors( $post_id );
		}
		// Asked for is not granted: each channel is checked before and after the filter.
		$channels = array_filter(
			$channels,
			static function ( $channel ) use ( $user ) {
				return self::may_subscribe( $channel, $user );
			}
		);
		/**
		 * Filters the channels a token grants. Channels of the plugin's
		 * families (`user.`, `role.`, `cap.`, `post.`) that the user may not
		 * have are removed after this filter.
		 *
		 * @param string[]     $channels Channels.
		 * @param WP_User|null $user     The user, null for a visitor.
		 * @param int[]        $post_ids Posts the page asked channels for.
		 */
		$channels = (array) apply_filters( 'rtet_token_channels', array_values( $channels ), $user, $post_ids );
		$channels = array_filter(
			array_map( 'strval', $channels ),
			static function ( $channel ) use ( $user ) {
				return RTET_Protocol::is_channel( $channel ) && self::may_subscribe( $channel, $user );
			}
		);
		return array_values( array_unique( $channels ) );
	}

	/**
	 * The channels on which a token makes its holder a presence member: the
	 * editors' channel of each post the user has open in the block editor
	 * (`editing`) and may edit. Visitors are never members.
	 *
	 * @param WP_User|null $user    The user, or null for a visitor.
	 * @param int[]        $editing Posts the page has open in the editor.
	 * @return string[]
	 */
	public static function presence_for_user( $user, array $editing ) {
		$user = $user instanceof WP_User && $user->exists() ? $user : null;
		if ( ! $user ) {
			return array();
		}
		$channels = array();
		foreach ( $editing as $post_id ) {
			$channel = self::post_editors( $post_id );
			if ( self::may_subscribe( $channel, $user ) ) {
				$channels[] = $channel;
			}
		}
		return array_values( array_unique( $channels ) );
	}

	/**
	 * The readers' channels whose counts a token shows (the readers badge):
	 * `post.<ID>` of each post the page asked for and the token grants.
	 *
	 * @param string[] $channels Channels the token grants.
	 * @param int[]    $post_ids Posts the page asked channels for.
	 * @return string[]
	 */
	public static function reader_counts( array $channels, array $post_ids ) {
		$wanted = array_map( array( __CLASS__, 'post' ), $post_ids );
		return array_values( array_intersect( $wanted, $channels ) );
	}

	/**
	 * Whether a user may subscribe to a channel of the plugin's families; channels of other names are the filters' business.
	 *
	 * @param string       $channel Channel.
	 * @param WP_User|null $user    The user, or null for a visitor.
	 * @return bool
	 */
	public static function may_subscribe( $channel, $user ) {
		$channel = (string) $channel;
		if ( ! RTET_Protocol::is_channel( $channel ) ) {
			return false;
		}
		if ( preg_match( '/^user\.(.*)$/D', $channel, $m ) ) {
			return $user && (string) $user->ID === $m[1];
		}
		if ( preg_match( '/^role\.(.*)$/D', $channel, $m ) ) {
			return $user && in_array( $m[1], (array) $user->roles, true );
		}
		if ( preg_match( '/^cap\.(.*)$/D', $channel, $m ) ) {
			return $user && in_array( $m[1], self::capabilities(), true ) && user_can( $user, $m[1] );
		}
		if ( preg_match( '/^post\.(.*)$/D', $channel, $m ) ) {
			if ( preg_match( '/^([1-9][0-9]{0,19})$/D', $m[1], $p ) ) {
				return self::may_read_post( (int) $p[1], $user );
			}
			if ( preg_match( '/^([1-9][0-9]{0,19})\.editors$/D', $m[1], $p ) ) {
				return $user && get_post( (int) $p[1] ) instanceof WP_Post && user_can( $user, 'edit_post', (int) $p[1] );
			}
			return false;
		}
		return true;
	}

	/**
	 * Whether a user may read a post (and so learn of its new comments).
	 * Visitors: published, public, without a password. Users: `read_post`,
	 * and a password-protected post only once its password was entered.
	 *
	 * @param int          $post_id Post ID.
	 * @param WP_User|null $user    The user, or null for a visitor.
	 * @return bool
	 */
	public static function may_read_post( $post_id, $user ) {
		$post = get_post( (int) $post_id );
		if ( ! $post instanceof WP_Post || 'revision' === $post->post_type ) {
			return false;
		}
		if ( ! $user ) {
			return RTET_Events::is_public_post( $post );
		}
		return user_can( $user, 'read_post', $post->ID ) && ! post_password_required( $post );
	}
}
