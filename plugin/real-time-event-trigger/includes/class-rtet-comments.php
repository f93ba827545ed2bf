<?php
/**
 * Live comments.
 *
 * - `comment_approved` to `post.<ID>` when a comment is approved (posted
 *   approved, or approved later from the moderation queue or from spam):
 *   readers of that post see "New comment by X" and the comment count
 *   changes; themes insert the comment through `rtet.comment_approved`.
 *   Sent once per comment: unapproving and approving it again, or restoring
 *   it from the trash, announces nothing new.
 * - `comment_held` to `cap.moderate_comments` when a comment waits for
 *   moderation, with a link to moderate it.
 * - Spam, trash, pingbacks, trackbacks and other comment types go nowhere.
 *
 * The hooks only note which comments changed; the events are sent at the
 * end of the request (`shutdown`, before the HTTP fallback's flush), from
 * the comments' status then. A request that stores a comment and changes
 * its status at once (the REST API creating a comment as spam, a
 * moderator's "approve and reply") sends what the comment ended up as.
 *
 * Payloads carry what a reader of the post may see: the name the commenter
 * gave, an excerpt as plain text, the comment's link and date. Never an
 * e-mail address, IP address or user agent.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Comment events.
 */
class RTET_Comments {

	/** Comment meta set once a comment's `comment_approved` was sent. */
	const ANNOUNCED_META = '_rtet_announced';

	/** How many words of a comment an event carries. */
	const EXCERPT_WORDS = 30;

	/**
	 * Comments that changed in this request: ID => 'new' or 'approved'.
	 *
	 * @var string[]
	 */
	private static $changed = array();

	/**
	 * `wp_insert_comment`: a comment was stored (from the comment form, the REST API, wp-admin).
	 *
	 * @param int        $comment_id Comment ID.
	 * @param WP_Comment $comment    The comment.
	 */
	public static function on_insert_comment( $comment_id, $comment ) {
		unset( $comment_id );
		if ( ! $comment instanceof WP_Comment || ! self::is_sent_type( $comment ) || ( defined( 'WP_IMPORTING' ) && WP_IMPORTING ) ) {
			return;
		}
		self::$changed[ (int) $comment->comment_ID ] = 'new';
	}

	/**
	 * `transition_comment_status`: a stored comment changed status.
	 *
	 * @param string     $new_status 'approved', 'unapproved', 'spam', 'trash'.
	 * @param string     $old_status The status before.
	 * @param WP_Comment $comment    The comment.
	 */
	public static function on_transition_comment_status( $new_status, $old_status, $comment ) {
		if ( 'approved' !== $new_status || 'approved' === $old_status || ! $comment instanceof WP_Comment || ! self::is_sent_type( $comment ) ) {
			return;
		}
		if ( ! isset( self::$changed[ (int) $comment->comment_ID ] ) ) {
			self::$changed[ (int) $comment->comment_ID ] = 'approved';
		}
	}

	/**
	 * `shutdown`: sends the events of the comments that changed in this
	 * request, as they are now: approved ones to their post's readers, new
	 * ones waiting for moderation to moderators, nothing for the others.
	 */
	public static function send_changed() {
		$changed       = self::$changed;
		self::$changed = array();
		foreach ( $changed as $id => $change ) {
			clean_comment_cache( $id );
			$comment = get_comment( $id );
			if ( ! $comment instanceof WP_Comment ) {
				continue;
			}
			$status = (string) $comment->comment_approved;
			if ( '1' === $status ) {
				self::announce_approved( $comment );
			} elseif ( '0' === $status && 'new' === $change ) {
				self::announce_held( $comment );
			}
		}
	}

	/**
	 * Whether comments of this type are sent: real comments only (filterable).
	 *
	 * @param WP_Comment $comment Comment.
	 * @return bool
	 */
	private static function is_sent_type( WP_Comment $comment ) {
		/**
		 * Filters the comment types whose comments are sent live.
		 *
		 * @param string[] $types Default: array( 'comment' ).
		 */
		$types = (array) apply_filters( 'rtet_comment_types', array( 'comment' ) );
		return in_array( get_comment_type( $comment ), $types, true );
	}

	/**
	 * Sends `comment_approved` to the post's readers, once per comment.
	 *
	 * @param WP_Comment $comment An approved comment.
	 */
	private static function announce_approved( WP_Comment $comment ) {
		$post = get_post( (int) $comment->comment_post_ID );
		if ( ! $post instanceof WP_Post || ! RTET_Settings::event_enabled( 'comment_approved' ) ) {
			return;
		}
		// add_comment_meta() with $unique: of two requests approving the same comment at once, one announces it.
		if ( ! add_comment_meta( (int) $comment->comment_ID, self::ANNOUNCED_META, time(), true ) ) {
			return;
		}
		RTET_Events::dispatch(
			'comment_approved',
			self::approved_data( $comment, $post ),
			array( RTET_Channels::post( $post->ID ) ),
			array(
				'source'  => 'builtin',
				'post'    => $post,
				'comment' => $comment,
			)
		);
	}

	/**
	 * Sends `comment_held` to moderators.
	 *
	 * @param WP_Comment $comment A comment waiting for moderation.
	 */
	private static function announce_held( WP_Comment $comment ) {
		$post = get_post( (int) $comment->comment_post_ID );
		if ( ! $post instanceof WP_Post || ! RTET_Settings::event_enabled( 'comment_held' ) ) {
			return;
		}
		RTET_Events::dispatch(
			'comment_held',
			self::held_data( $comment, $post ),
			array( RTET_Channels::cap( 'moderate_comments' ) ),
			array(
				'source'  => 'builtin',
				'post'    => $post,
				'comment' => $comment,
			)
		);
	}

	/**
	 * The payload of `comment_approved`: what any reader of the post sees on its page.
	 *
	 * @param WP_Comment $comment Comment.
	 * @param WP_Post    $post    Its post.
	 * @return array {id, post, parent, author, excerpt, link, date, count, count_title}
	 */
	public static function approved_data( WP_Comment $comment, WP_Post $post ) {
		$count = self::approved_count( $post->ID );
		return array(
			'id'          => (int) $comment->comment_ID,
			'post'        => (int) $post->ID,
			'parent'      => (int) $comment->comment_parent,
			'author'      => self::author( $comment ),
			'excerpt'     => self::excerpt( $comment ),
			'link'        => get_comment_link( $comment ),
			'date'        => mysql2date( 'c', $comment->comment_date_gmt . '+00:00', false ),
			'count'       => $count,
			'count_title' => self::count_title( $post, $count ),
		);
	}

	/**
	 * The payload of `comment_held`: for moderators, still without e-mail or IP.
	 *
	 * @param WP_Comment $comment Comment.
	 * @param WP_Post    $post    Its post.
	 * @return array {id, post, post_title, author, excerpt, moderate_link, date}
	 */
	public static function held_data( WP_Comment $comment, WP_Post $post ) {
		return array(
			'id'            => (int) $comment->comment_ID,
			'post'          => (int) $post->ID,
			'post_title'    => html_entity_decode( wp_strip_all_tags( get_the_title( $post ) ), ENT_QUOTES, 'UTF-8' ),
			'author'        => self::author( $comment ),
			'excerpt'       => self::excerpt( $comment ),
			// The page moderation e-mails link to: it asks to confirm, with a nonce.
			'moderate_link' => admin_url( 'comment.php?action=approve&c=' . (int) $comment->comment_ID ),
			'date'          => mysql2date( 'c', $comment->comment_date_gmt . '+00:00', false ),
		);
	}

	/**
	 * The commenter's name as text.
	 *
	 * @param WP_Comment $comment Comment.
	 * @return string
	 */
	private static function author( WP_Comment $comment ) {
		$name = '' !== (string) $comment->comment_author ? (string) $comment->comment_author : __( 'Anonymous', 'real-time-event-trigger' );
		return html_entity_decode( wp_strip_all_tags( $name ), ENT_QUOTES, 'UTF-8' );
	}

	/**
	 * The comment's first words as text (no markup: the client shows it with textContent).
	 *
	 * @param WP_Comment $comment Comment.
	 * @return string
	 */
	private static function excerpt( WP_Comment $comment ) {
		$text = wp_trim_words( wp_strip_all_tags( (string) $comment->comment_content ), self::EXCERPT_WORDS, '…' );
		return html_entity_decode( $text, ENT_QUOTES, 'UTF-8' );
	}

	/**
	 * How many approved comments the post has, as its comment count shows them.
	 * Counted here because WordPress updates the stored count after the status hooks.
	 *
	 * @param int $post_id Post ID.
	 * @return int
	 */
	private static function approved_count( $post_id ) {
		global $wpdb;
		$count = (int) $wpdb->get_var( $wpdb->prepare( "SELECT COUNT(*) FROM {$wpdb->comments} WHERE comment_post_ID = %d AND comment_approved = '1'", $post_id ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
		return (int) apply_filters( 'get_comments_number', $count, $post_id ); // phpcs:ignore WordPress.NamingConventions.PrefixAllGlobals.NonPrefixedHooknameFound -- core's filter, as get_comments_number() applies it.
	}

	/**
	 * The text of core's comments title block with its default settings, in core's own words.
	 *
	 * @param WP_Post $post  Post.
	 * @param int     $count Approved comments.
	 * @return string
	 */
	private static function count_title( WP_Post $post, $count ) {
		// phpcs:disable WordPress.WP.I18n.MissingArgDomain -- the same strings as core's block, so the same translations.
		/* translators: %s: Post title. */
		$title = sprintf( __( '&#8220;%s&#8221;' ), get_the_title( $post ) );
		if ( 1 === $count ) {
			/* translators: %s: Post title. */
			$text = sprintf( __( 'One response to %s' ), $title );
		} else {
			/* translators: 1: Number of comments, 2: Post title. */
			$text = sprintf( _n( '%1$s response to %2$s', '%1$s responses to %2$s', $count ), number_format_i18n( $count ), $title );
		}
		// phpcs:enable
		return html_entity_decode( wp_strip_all_tags( $text ), ENT_QUOTES, 'UTF-8' );
	}

	/**
	 * `render_block`: marks core's comments title block (with its default
	 * settings) so the client can update its text when a comment is approved.
	 *
	 * @param string $content Block HTML.
	 * @param array  $block   The block.
	 * @return string
	 */
	public static function mark_comments_title( $content, $block ) {
		if ( ! is_array( $block ) || 'core/comments-title' !== ( $block['blockName'] ?? '' ) || '' === trim( (string) $content ) ) {
			return $content;
		}
		$attrs = (array) ( $block['attrs'] ?? array() );
		if ( false === ( $attrs['showPostTitle'] ?? true ) || false === ( $attrs['showCommentsCount'] ?? true ) ) {
			return $content;
		}
		$post_id = (int) get_the_ID();
		if ( $post_id <= 0 ) {
			return $content;
		}
		return (string) preg_replace( '/^(\s*<h[1-6]\b)/i', '$1 data-rtet-comments-title="' . $post_id . '"', (string) $content, 1 );
	}
}
