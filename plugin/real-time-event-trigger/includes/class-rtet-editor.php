<?php
/**
 * Editor awareness: when someone saves a post, everyone else who has it open
 * in the block editor is told at once (a core notice with a link to the new
 * revision), before they overwrite it.
 *
 * `post_saved` goes to `post.<ID>.editors`, a channel granted only to users
 * who may edit the post (RTET_Channels), so readers of a public post never
 * learn of draft saves. Post locks ("X is currently editing") stay with
 * WordPress's Heartbeat; this adds the moment of the save, which Heartbeat
 * does not report.
 *
 * Who else has the post open comes from the relay's presence on the same
 * channel: the token endpoint makes the user a member when the block
 * editor's page asks (`editing`, RTET_Client), and rtet-editor.js shows
 * "Alice is also editing this post." for the other members.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * Save notices in the block editor.
 */
class RTET_Editor {

	/** Script handle. */
	const HANDLE = 'rtet-editor';

	/**
	 * The revision each post's save made in this request: post ID => revision ID.
	 *
	 * @var int[]
	 */
	private static $revisions = array();

	/**
	 * `wp_insert_post`: notes the revision a save stores, so that post_saved
	 * links it without asking the database for the post's newest revision.
	 *
	 * @param int     $post_id Post ID.
	 * @param WP_Post $post    The stored post.
	 */
	public static function note_revision( $post_id, $post ) {
		if ( $post instanceof WP_Post && 'revision' === $post->post_type && $post->post_parent > 0 && ! wp_is_post_autosave( $post ) ) {
			self::$revisions[ (int) $post->post_parent ] = (int) $post_id;
		}
	}

	/**
	 * `wp_after_insert_post`: a post was saved (by the editor, the REST API, Quick Edit).
	 *
	 * @param int          $post_id     Post ID.
	 * @param WP_Post      $post        The post now.
	 * @param bool         $update      Whether it existed before.
	 * @param WP_Post|null $post_before The post before the save.
	 */
	public static function on_after_insert_post( $post_id, $post, $update, $post_before ) {
		unset( $post_id, $post_before );
		if ( ! $update || ! $post instanceof WP_Post || ! RTET_Settings::event_enabled( 'post_saved' ) ) {
			return;
		}
		if ( wp_is_post_revision( $post ) || wp_is_post_autosave( $post ) || in_array( $post->post_status, array( 'auto-draft', 'inherit', 'trash' ), true ) ) {
			return;
		}
		// Autosaves and the block editor's second request for legacy meta boxes are not saves of their own.
		if ( ( defined( 'DOING_AUTOSAVE' ) && DOING_AUTOSAVE ) || isset( $_GET['meta-box-loader'] ) ) { // phpcs:ignore WordPress.Security.NonceVerification.Recommended
			return;
		}
		$type = get_post_type_object( $post->post_type );
		if ( ! $type || ! $type->show_ui ) {
			return;
		}
		RTET_Events::after_response(
			static function () use ( $post ) {
				RTET_Events::dispatch(
					'post_saved',
					self::saved_data( $post ),
					array( RTET_Channels::post_editors( $post->ID ) ),
					array(
						'source' => 'builtin',
						'post'   => $post,
					)
				);
			}
		);
	}

	/**
	 * The payload of `post_saved`.
	 *
	 * @param WP_Post $post The saved post.
	 * @return array {id, by, by_name, status, modified, revision_link}
	 */
	public static function saved_data( WP_Post $post ) {
		$user     = wp_get_current_user();
		$revision = self::$revisions[ $post->ID ] ?? 0;
		if ( ! $revision && wp_revisions_enabled( $post ) ) {
			// This save stored no revision (nothing a revision keeps changed): link the newest one.
			$revisions = wp_get_post_revisions( $post->ID, array( 'posts_per_page' => 1 ) );
			$newest    = reset( $revisions );
			$revision  = $newest instanceof WP_Post ? (int) $newest->ID : 0;
		}
		return array(
			'id'            => (int) $post->ID,
			'by'            => (int) $user->ID,
			'by_name'       => $user->exists() ? $user->display_name : '',
			'status'        => $post->post_status,
			'modified'      => mysql2date( 'c', $post->post_modified_gmt . '+00:00', false ),
			'revision_link' => $revision ? admin_url( 'revision.php?revision=' . $revision ) : get_edit_post_link( $post->ID, 'raw' ),
		);
	}

	/**
	 * `enqueue_block_editor_assets`: the script that turns `post_saved` into a
	 * notice. It depends on the client, which `admin_enqueue_scripts` adds
	 * later; without the client (filtered out) it is not printed.
	 */
	public static function enqueue() {
		$post = get_post();
		if ( ! $post instanceof WP_Post || ! RTET_Settings::event_enabled( 'post_saved' ) || ! RTET_Settings::is_configured() ) {
			return;
		}
		wp_enqueue_script( self::HANDLE, plugins_url( 'assets/js/rtet-editor.js', RTET_PLUGIN_FILE ), array( RTET_Client::HANDLE, 'wp-hooks', 'wp-data', 'wp-notices' ), RTET_PLUGIN_VERSION, true );
		wp_add_inline_script(
			self::HANDLE,
			'window.rtetEditor = ' . wp_json_encode(
				array(
					'post' => (int) $post->ID,
					'user' => get_current_user_id(),
					'i18n' => array(
						/* translators: %s: the name of the user who saved */
						'saved'           => __( '%s just saved this post. Your unsaved changes would overwrite theirs: look at their version before you save.', 'real-time-event-trigger' ),
						'someone'         => __( 'Someone', 'real-time-event-trigger' ),
						'viewRevision'    => __( 'View their revision', 'real-time-event-trigger' ),
						/* translators: %s: the name of another user editing this post */
						'alsoEditing'     => __( '%s is also editing this post.', 'real-time-event-trigger' ),
						/* translators: %s: the names of other users editing this post, comma-separated */
						'alsoEditingMany' => __( '%s are also editing this post.', 'real-time-event-trigger' ),
					),
				)
			) . ';',
			'before'
		);
	}
}
