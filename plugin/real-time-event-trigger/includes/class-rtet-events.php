<?php
/**
 * Built-in events and the one path every event takes (filters, then the sender).
 *
 * - `post_published` to `public` when a post of a public post type first
 *   becomes public (published without a password), scheduled posts included;
 * - `post_updated` to `public` for later edits of a public post;
 * - `user_registered` to `role.administrator` only (it carries an e-mail address).
 *
 * Revisions, autosaves, private, draft and password-protected posts never go
 * to `public`, whatever the filters say.
 *
 * A save's events are worked out and sent after the response where the
 * server can end the response early (php-fpm's fastcgi_finish_request()):
 * the editor who publishes does not wait for the payload (title filters,
 * permalink, author, date), the filters or the send. Elsewhere (PHP CLI,
 * mod_php) the response ends with the process, so they are sent at once.
 * Events keep their order: an event dispatched while saves wait (a comment,
 * a plugin's own) first sends theirs.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Built-in events.
 */
class RTET_Events {

	/** Post meta set when a public post stops being public: its next publish is not its first. */
	const PUBLISHED_META = '_rtet_published';

	/**
	 * Work waiting for the end of the response, in the order it came.
	 *
	 * @var callable[]
	 */
	private static $after_response = array();

	/**
	 * Whether the waiting work is being done (an event it sends must not start it again).
	 *
	 * @var bool
	 */
	private static $running = false;

	/**
	 * Runs `$work` after the response when the server can end the response
	 * before the request (php-fpm), at once otherwise.
	 *
	 * @param callable $work What to do.
	 */
	public static function after_response( callable $work ) {
		if ( function_exists( 'fastcgi_finish_request' ) ) {
			self::$after_response[] = $work;
			return;
		}
		$work();
	}

	/**
	 * Does the waiting work, oldest first.
	 */
	public static function run_waiting() {
		if ( self::$running ) {
			return;
		}
		self::$running = true;
		try {
			while ( self::$after_response ) {
				$work = array_shift( self::$after_response );
				$work();
			}
		} finally {
			self::$running = false;
		}
	}

	/**
	 * `shutdown`, last but the HTTP fallback's flush: ends the response
	 * (php-fpm), then does the waiting work, so its events reach the
	 * transport before the fallback posts what it holds.
	 */
	public static function send_after_response() {
		if ( ! self::$after_response ) {
			return;
		}
		fastcgi_finish_request();
		self::run_waiting();
	}

	/**
	 * Sends an event after the filters had their say.
	 *
	 * @param string          $event    Event name.
	 * @param mixed           $data     Payload.
	 * @param string|string[] $channels Channels.
	 * @param array           $context  What the event is about: `source` ('builtin' or 'custom'), `post`, `user`.
	 * @param array           $options  Sender options (`id`, `blocking`).
	 * @return string|WP_Error|false The event id, an error, or false when a filter dropped it.
	 */
	public static function dispatch( $event, $data, $channels, array $context = array(), array $options = array() ) {
		// Events of earlier saves in this request go first.
		self::run_waiting();
		/**
		 * Filters an event's data; return false to drop the event.
		 *
		 * @param mixed  $data    The payload.
		 * @param string $event   Event name.
		 * @param array  $context `source` ('builtin' or 'custom'), and `post` (WP_Post) or `user` (WP_User) for built-ins.
		 */
		$data = apply_filters( 'rtet_event_data', $data, $event, $context );
		if ( false === $data ) {
			return false;
		}
		/**
		 * Filters an event's channels; return an empty array to drop the event.
		 *
		 * @param string[] $channels Channels.
		 * @param string   $event    Event name.
		 * @param mixed    $data     The (filtered) payload.
		 * @param array    $context  See rtet_event_data.
		 */
		$channels = (array) apply_filters( 'rtet_event_channels', (array) $channels, $event, $data, $context );

		// Content that is not public never goes to `public`, whatever a filter did.
		if ( isset( $context['post'] ) && $context['post'] instanceof WP_Post && ! self::is_public_post( $context['post'] ) ) {
			$channels = array_diff( $channels, array( 'public' ) );
		}
		$channels = array_values( array_filter( array_map( 'strval', $channels ), 'strlen' ) );
		if ( empty( $channels ) ) {
			return false;
		}

		$result = RTET_Sender::send( $event, $data, $channels, $options );
		if ( is_wp_error( $result ) ) {
			/**
			 * Fires when an event could not be sent (or queued).
			 *
			 * @param WP_Error $error    Why.
			 * @param string   $event    Event name.
			 * @param mixed    $data     Payload.
			 * @param string[] $channels Channels.
			 */
			do_action( 'rtet_send_error', $result, $event, $data, $channels );
			return $result;
		}
		/**
		 * Fires after an event was handed to the transport.
		 *
		 * @param string   $id        Event id.
		 * @param string   $event     Event name.
		 * @param mixed    $data      Payload.
		 * @param string[] $channels  Channels.
		 * @param string   $transport 'extension' or 'http'.
		 */
		do_action( 'rtet_event_sent', $result, $event, $data, $channels, RTET_Sender::transport() );
		return $result;
	}

	/**
	 * Whether a post is publicly visible: published, no password, of a public post type, not a revision or autosave.
	 *
	 * @param WP_Post $post Post.
	 * @return bool
	 */
	public static function is_public_post( WP_Post $post ) {
		if ( wp_is_post_revision( $post ) || wp_is_post_autosave( $post ) || 'revision' === $post->post_type ) {
			return false;
		}
		if ( 'publish' !== $post->post_status || '' !== (string) $post->post_password ) {
			return false;
		}
		$type = get_post_type_object( $post->post_type );
		return $type && $type->public && is_post_type_viewable( $type );
	}

	/**
	 * The payload for a post event: id, title, type, link, author name, date.
	 *
	 * @param WP_Post $post Post.
	 * @return array
	 */
	public static function post_data( WP_Post $post ) {
		$author = get_userdata( (int) $post->post_author );
		return array(
			'id'     => (int) $post->ID,
			'title'  => html_entity_decode( wp_strip_all_tags( get_the_title( $post ) ), ENT_QUOTES, 'UTF-8' ),
			'type'   => $post->post_type,
			'link'   => get_permalink( $post ),
			'author' => $author ? $author->display_name : '',
			'date'   => get_post_time( 'c', true, $post ),
		);
	}

	/**
	 * `wp_after_insert_post`: a post was saved, with its terms and meta.
	 *
	 * A post that goes public is announced once: `post_published` the first
	 * time, `post_updated` when it comes back after having been unpublished.
	 * What tells the two apart is PUBLISHED_META, written when a public post
	 * stops being public (unpublished, trashed, given a password), never when
	 * it is published: publishing, which an editor waits for, reads post meta
	 * only for a post that was not new and not public before the save, and
	 * writes none. All of it happens after the response where it can (see
	 * after_response()).
	 *
	 * @param int          $post_id     Post ID.
	 * @param WP_Post      $post        The post now.
	 * @param bool         $update      Whether it existed before.
	 * @param WP_Post|null $post_before The post before the save (null for a new post).
	 */
	public static function on_after_insert_post( $post_id, $post, $update, $post_before ) {
		unset( $post_id, $update );
		if ( ! $post instanceof WP_Post ) {
			return;
		}
		// The block editor saves legacy meta boxes in a second request; that is the same edit.
		$meta_box_loader = isset( $_GET['meta-box-loader'] ); // phpcs:ignore WordPress.Security.NonceVerification.Recommended
		self::after_response(
			static function () use ( $post, $post_before, $meta_box_loader ) {
				self::announce_save( $post, $post_before, $meta_box_loader );
			}
		);
	}

	/**
	 * The events of one save: see on_after_insert_post().
	 *
	 * @param WP_Post      $post            The post as saved.
	 * @param WP_Post|null $post_before     The post before the save (null for a new post).
	 * @param bool         $meta_box_loader Whether the save is the block editor's second request, for legacy meta boxes.
	 */
	private static function announce_save( WP_Post $post, $post_before, $meta_box_loader ) {
		$was_public = $post_before instanceof WP_Post && self::is_public_post( $post_before );
		if ( ! self::is_public_post( $post ) ) {
			if ( $was_public ) {
				// Not public any more: should it come back, that is an update, not news.
				update_post_meta( $post->ID, self::PUBLISHED_META, time() );
			}
			return;
		}
		$first_time = ! $was_public && ( ! $post_before instanceof WP_Post || ! get_post_meta( $post->ID, self::PUBLISHED_META, true ) );
		if ( $first_time ) {
			if ( RTET_Settings::event_enabled( 'post_published' ) ) {
				self::dispatch( 'post_published', self::post_data( $post ), array( 'public' ), array( 'source' => 'builtin', 'post' => $post ) );
			}
			return;
		}
		if ( ! $meta_box_loader && RTET_Settings::event_enabled( 'post_updated' ) ) {
			self::dispatch( 'post_updated', self::post_data( $post ), array( 'public' ), array( 'source' => 'builtin', 'post' => $post ) );
		}
	}

	/**
	 * `user_register`: tell administrators.
	 *
	 * @param int $user_id New user's ID.
	 */
	public static function on_user_register( $user_id ) {
		if ( ! RTET_Settings::event_enabled( 'user_registered' ) ) {
			return;
		}
		$user = get_userdata( $user_id );
		if ( ! $user ) {
			return;
		}
		$data = array(
			'id'           => (int) $user->ID,
			'login'        => $user->user_login,
			'display_name' => $user->display_name,
			'email'        => $user->user_email,
			'roles'        => array_values( $user->roles ),
			'registered'   => mysql2date( 'c', $user->user_registered, false ),
			'edit_link'    => admin_url( 'user-edit.php?user_id=' . (int) $user->ID ),
		);
		self::dispatch( 'user_registered', $data, array( 'role.administrator' ), array( 'source' => 'builtin', 'user' => $user ) );
	}
}
