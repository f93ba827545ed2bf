<?php
/**
 * Enqueues the browser client (assets/js/rtet-client.js) on the front end
 * and in wp-admin, with its settings passed through wp_add_inline_script().
 *
 * The settings hold the relay's browser URL, the anonymous channels, the
 * token endpoint and, for a logged-in user, a REST nonce; never the API key
 * and never a token, so cached pages stay valid.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The browser client.
 */
class RTET_Client {

	/** Script and style handle. */
	const HANDLE = 'rtet-client';

	/** Counts whose readers' text the client is given (see readers_text()). */
	const READERS_COUNTS = 200;

	/**
	 * `wp_enqueue_scripts`.
	 */
	public static function enqueue_front() {
		self::enqueue( 'front' );
	}

	/**
	 * `admin_enqueue_scripts`.
	 */
	public static function enqueue_admin() {
		self::enqueue( 'admin' );
	}

	/**
	 * Enqueues the client for a context.
	 *
	 * @param string $context 'front' or 'admin'.
	 */
	private static function enqueue( $context ) {
		if ( '' === RTET_Settings::browser_url() || ! RTET_Settings::is_configured() ) {
			return;
		}
		/**
		 * Filters whether the client loads on this page.
		 *
		 * @param bool   $load    Default true.
		 * @param string $context 'front' or 'admin'.
		 */
		if ( ! apply_filters( 'rtet_load_client', true, $context ) ) {
			return;
		}
		$base = plugins_url( 'assets/', RTET_PLUGIN_FILE );
		/**
		 * Filters the client's script dependencies. wp-hooks is optional for
		 * the client; it is loaded by default so `wp.hooks` actions fire.
		 *
		 * @param string[] $deps Script handles.
		 */
		$deps = (array) apply_filters( 'rtet_client_dependencies', array( 'wp-hooks' ) );
		wp_enqueue_script( self::HANDLE, $base . 'js/rtet-client.js', $deps, RTET_PLUGIN_VERSION, true );
		wp_enqueue_style( self::HANDLE, $base . 'css/rtet-client.css', array(), RTET_PLUGIN_VERSION );

		$logged_in = is_user_logged_in();
		/**
		 * Filters the channels visitors subscribe to without a token: the
		 * relay's anonymous channels (its `--anonymous-channels`, default `public`).
		 *
		 * @param string[] $channels Channels.
		 */
		$anonymous = array_values( array_filter( (array) apply_filters( 'rtet_anonymous_channels', array( 'public' ) ), array( 'RTET_Protocol', 'is_channel' ) ) );
		$settings  = array(
			'tokenUrl'       => esc_url_raw( rest_url( RTET_REST::NS . '/token' ) ),
			// Posts whose channels this page asks for; the token endpoint grants only those the user may read.
			'posts'          => self::page_posts( $context ),
			// The post open in the block editor: its other editors see this user by presence.
			'editing'        => self::editing_post( $context ),
			'commentNotices' => 'admin' === $context && (bool) RTET_Settings::value( 'admin_notices' ) && current_user_can( 'moderate_comments' ),
			// Visitors connect here without a token; logged-in users get the URL with their token.
			'url'          => RTET_Settings::browser_url(),
			'anonymous'    => $anonymous,
			'nonce'        => $logged_in ? wp_create_nonce( 'wp_rest' ) : '',
			'context'      => $context,
			'toasts'       => 'front' === $context && (bool) RTET_Settings::value( 'toasts' ),
			'readersBadge' => 'front' === $context && (bool) RTET_Settings::value( 'readers_badge' ),
			'adminNotices' => 'admin' === $context && (bool) RTET_Settings::value( 'admin_notices' ) && current_user_can( 'list_users' ),
			'reconnect'    => array(
				'min' => 1000,
				'max' => 30000,
			),
			'i18n'         => array(
				/* translators: %s: post title */
				'newPost'       => __( 'New post: %s', 'real-time-event-trigger' ),
				'readPost'      => __( 'Read it', 'real-time-event-trigger' ),
				'dismiss'       => __( 'Dismiss', 'real-time-event-trigger' ),
				'notifications' => __( 'Live notifications', 'real-time-event-trigger' ),
				/* translators: 1: user login, 2: e-mail address */
				'newUser'       => __( 'New user registered: %1$s (%2$s)', 'real-time-event-trigger' ),
				'viewUser'      => __( 'View user', 'real-time-event-trigger' ),
				'dismissNotice' => __( 'Dismiss this notice.', 'real-time-event-trigger' ),
				/* translators: %s: comment author's name */
				'newComment'    => __( 'New comment by %s', 'real-time-event-trigger' ),
				'readComment'   => __( 'Read it', 'real-time-event-trigger' ),
				/* translators: 1: comment author's name, 2: post title */
				'heldComment'   => __( 'A comment by %1$s on "%2$s" is waiting for moderation.', 'real-time-event-trigger' ),
				'moderate'      => __( 'Moderate it', 'real-time-event-trigger' ),
				'readers'       => 'front' === $context && (bool) RTET_Settings::value( 'readers_badge' ) ? self::readers_text() : null,
			),
		);
		/**
		 * Filters the settings passed to the browser client.
		 *
		 * @param array  $settings Client settings.
		 * @param string $context  'front' or 'admin'.
		 */
		$settings = (array) apply_filters( 'rtet_client_settings', $settings, $context );
		wp_add_inline_script( self::HANDLE, 'window.rtetSettings = ' . wp_json_encode( $settings ) . ';', 'before' );
	}

	/**
	 * The post this page has open in the block editor, when the user may edit
	 * it and save notices are on (editor awareness); 0 on any other page.
	 *
	 * @param string $context 'front' or 'admin'.
	 * @return int
	 */
	private static function editing_post( $context ) {
		if ( 'admin' !== $context || ! function_exists( 'get_current_screen' ) || ! RTET_Settings::event_enabled( 'post_saved' ) ) {
			return 0;
		}
		$screen = get_current_screen();
		$post   = get_post();
		if ( ! $screen || 'post' !== $screen->base || ! $screen->is_block_editor() || ! $post instanceof WP_Post || ! current_user_can( 'edit_post', $post->ID ) ) {
			return 0;
		}
		return (int) $post->ID;
	}

	/**
	 * The posts this page asks channels for: on the front end the post being
	 * read when its new comments are sent live (comments open and the event
	 * on) or the readers badge is on (a public post); in wp-admin the post being edited. A visitor's page that asks for
	 * one fetches a token (an uncached REST request) instead of connecting
	 * anonymously; pages that ask for none stay without any request to the site.
	 *
	 * @param string $context 'front' or 'admin'.
	 * @return int[]
	 */
	private static function page_posts( $context ) {
		$posts = array();
		if ( 'front' === $context && is_singular() && RTET_Settings::event_enabled( 'comment_approved' ) ) {
			$id = (int) get_queried_object_id();
			if ( $id > 0 && comments_open( $id ) ) {
				$posts[] = $id;
			}
		}
		if ( 'front' === $context && is_singular() && RTET_Settings::value( 'readers_badge' ) ) {
			$post = get_post( (int) get_queried_object_id() );
			if ( $post instanceof WP_Post && RTET_Events::is_public_post( $post ) ) {
				$posts[] = (int) $post->ID;
			}
		}
		if ( 'admin' === $context && function_exists( 'get_current_screen' ) ) {
			$screen = get_current_screen();
			$post   = get_post();
			if ( $screen && 'post' === $screen->base && $post instanceof WP_Post && current_user_can( 'edit_post', $post->ID ) ) {
				$posts[] = (int) $post->ID;
			}
		}
		/**
		 * Filters the posts whose channels (`post.<ID>`, `post.<ID>.editors`) a page asks for.
		 *
		 * @param int[]  $posts   Post IDs.
		 * @param string $context 'front' or 'admin'.
		 */
		$posts = (array) apply_filters( 'rtet_page_posts', $posts, $context );
		return RTET_Channels::parse_post_ids( array_map( 'intval', $posts ) );
	}

	/**
	 * "N people reading" in the site's language, for any count the badge
	 * may show: the distinct texts `_n()` gives, and for each count under
	 * READERS_COUNTS the index of its text.
	 *
	 * The count is known only in the browser, and a language may have more
	 * than two plural forms (Polish: 1 osoba, 2 osoby, 5 osób, 22 osoby).
	 * Gettext plural rules look at a count only through its last digit, its
	 * last two digits and comparisons with numbers under 100, so a count of
	 * 200 or more takes the text of 100 + count % 100: the client looks up
	 * `pick[ n < 200 ? n : 100 + n % 100 ]`.
	 *
	 * @return array{forms: string[], pick: int[]}
	 */
	public static function readers_text() {
		$forms = array();
		$pick  = array();
		for ( $n = 0; $n < self::READERS_COUNTS; $n++ ) {
			/* translators: %s: how many people are reading this post */
			$form = _n( '%s person reading', '%s people reading', $n, 'real-time-event-trigger' );
			$i    = array_search( $form, $forms, true );
			if ( false === $i ) {
				$i       = count( $forms );
				$forms[] = $form;
			}
			$pick[] = $i;
		}
		return array(
			'forms' => $forms,
			'pick'  => $pick,
		);
	}
}
