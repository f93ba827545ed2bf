<?php
/**
 * Live comments and save notices: which comment and save events are sent,
 * to which channel, with what payload, and that the relay stores them with
 * the extension and with the HTTP fallback.
 *
 * @package real-time-event-trigger
 */

/**
 * Comment and editor events.
 */
class CommentsTest extends RTET_Test_Case {

	/**
	 * Events handed to the transport during the test: [event, channels, data, transport].
	 *
	 * @var array[]
	 */
	private $sent = array();

	/**
	 * A public post to comment on.
	 *
	 * @var int
	 */
	private $post;

	protected function setUp(): void {
		parent::setUp();
		$this->filter(
			'rtet_event_sent',
			function ( $id, $event, $data, $channels, $transport ) {
				$this->sent[] = array( $event, $channels, $data, $transport );
			},
			10,
			5
		);
		$this->post = (int) wp_insert_post(
			array(
				'post_title'  => 'Comments ' . bin2hex( random_bytes( 3 ) ),
				'post_status' => 'publish',
			)
		);
		self::settle();
		$this->sent = array();
	}

	/**
	 * Lets both transports send what they hold, so the relay's counters change only with what the test does next.
	 */
	private static function settle() {
		RTET_Sender::flush( true );
		if ( function_exists( 'rtet_flush' ) ) {
			rtet_flush( 5.0 );
		}
	}

	/**
	 * The comment and save events sent so far, after the end of the "request" (`shutdown`): [event, channels, data].
	 *
	 * @return array[]
	 */
	private function sent() {
		RTET_Comments::send_changed();
		return array_values(
			array_filter(
				$this->sent,
				static fn( $s ) => in_array( $s[0], array( 'comment_approved', 'comment_held', 'post_saved' ), true )
			)
		);
	}

	/**
	 * A comment on the test post, as a visitor leaves it.
	 *
	 * @param array $fields Overrides (comment_approved, comment_type, ...).
	 * @return int Comment ID.
	 */
	private function comment( array $fields = array() ) {
		$id = wp_insert_comment(
			array_merge(
				array(
					'comment_post_ID'      => $this->post,
					'comment_author'       => 'Bob &amp; <b>Co</b>',
					'comment_author_email' => 'bob.secret@example.test',
					'comment_author_IP'    => '203.0.113.77',
					'comment_agent'        => 'SecretAgent/1.0',
					'comment_content'      => 'Nice <script>alert(1)</script> post &amp; thanks',
					'comment_approved'     => 1,
				),
				$fields
			)
		);
		$this->assertIsInt( $id );
		return $id;
	}

	/**
	 * The transports to run a test with.
	 *
	 * @return array[]
	 */
	public static function transports() {
		return array(
			'extension'     => array( 'extension' ),
			'HTTP fallback' => array( 'http' ),
		);
	}

	/**
	 * Uses a transport for this test.
	 *
	 * @param string $transport 'extension' or 'http'.
	 */
	private function use_transport( $transport ) {
		if ( 'http' === $transport ) {
			$this->use_http_fallback();
			return;
		}
		if ( ! function_exists( 'rtet_send_event' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
		$this->filter( 'rtet_use_extension', '__return_true', 20 );
	}

	/**
	 * Sends what the transport holds and waits (bounded) for the relay's answers.
	 *
	 * @param string $transport 'extension' or 'http'.
	 */
	private static function deliver( $transport ) {
		if ( 'http' === $transport ) {
			self::assertSame( 0, RTET_Sender::flush( true ), 'nothing left undelivered' );
		} else {
			self::assertTrue( rtet_flush( 5.0 ), 'the extension had every event acked' );
		}
	}

	/**
	 * @dataProvider transports
	 *
	 * @param string $transport Transport.
	 */
	public function test_an_approved_comment_goes_to_the_posts_readers_as_text_without_private_data( $transport ) {
		$this->use_transport( $transport );
		$stored = self::relay_metric( 'rtet_events_published_total' );
		$id     = $this->comment();
		$sent   = $this->sent();
		self::deliver( $transport );

		$this->assertCount( 1, $sent );
		list( $event, $channels, $data, $used ) = $sent[0];
		$this->assertSame( 'comment_approved', $event );
		$this->assertSame( array( 'post.' . $this->post ), $channels );
		$this->assertSame( $transport, $used );
		$this->assertSame( $id, $data['id'] );
		$this->assertSame( $this->post, $data['post'] );
		$this->assertSame( 'Bob & Co', $data['author'] );
		$this->assertSame( 'Nice post & thanks', $data['excerpt'] );
		$this->assertSame( get_comment_link( $id ), $data['link'] );
		$this->assertSame( 1, $data['count'] );
		$this->assertStringStartsWith( 'One response to', $data['count_title'] );
		$json = wp_json_encode( $data );
		foreach ( array( 'bob.secret', '203.0.113.77', 'SecretAgent', '<' ) as $private ) {
			$this->assertStringNotContainsString( $private, $json );
		}
		$this->assertSame( $stored + 1, self::relay_metric( 'rtet_events_published_total' ), 'the relay stored it' );
	}

	/**
	 * @dataProvider transports
	 *
	 * @param string $transport Transport.
	 */
	public function test_a_held_comment_goes_to_moderators_and_to_readers_once_approved( $transport ) {
		$this->use_transport( $transport );
		$stored = self::relay_metric( 'rtet_events_published_total' );
		$id     = $this->comment( array( 'comment_approved' => 0 ) );
		$sent   = $this->sent();
		$this->assertCount( 1, $sent );
		$this->assertSame( 'comment_held', $sent[0][0] );
		$this->assertSame( array( 'cap.moderate_comments' ), $sent[0][1] );
		$this->assertSame( admin_url( 'comment.php?action=approve&c=' . $id ), $sent[0][2]['moderate_link'] );
		$this->assertSame( get_the_title( $this->post ), $sent[0][2]['post_title'] );
		$this->assertStringNotContainsString( 'bob.secret', wp_json_encode( $sent[0][2] ) );
		$this->assertStringNotContainsString( '203.0.113.77', wp_json_encode( $sent[0][2] ) );

		// A moderator approves it: now the post's readers hear of it, with the new count.
		wp_set_comment_status( $id, 'approve' );
		$sent = $this->sent();
		$this->assertCount( 2, $sent );
		$this->assertSame( 'comment_approved', $sent[1][0] );
		$this->assertSame( array( 'post.' . $this->post ), $sent[1][1] );
		$this->assertSame( 1, $sent[1][2]['count'] );

		// Unapproved and approved again: nothing new to announce.
		wp_set_comment_status( $id, 'hold' );
		wp_set_comment_status( $id, 'approve' );
		$this->assertCount( 2, $this->sent() );

		self::deliver( $transport );
		$this->assertSame( $stored + 2, self::relay_metric( 'rtet_events_published_total' ) );
	}

	public function test_spam_trash_pingbacks_and_switched_off_events_go_nowhere() {
		$this->use_http_fallback();
		$this->comment( array( 'comment_approved' => 'spam' ) );
		$this->comment( array( 'comment_approved' => 'trash' ) );
		$this->comment( array( 'comment_type' => 'pingback' ) );
		$this->assertSame( array(), $this->sent() );

		// Held in one request, marked as spam in another.
		$spam = $this->comment( array( 'comment_approved' => 0 ) );
		$this->assertSame( array( 'comment_held' ), array_column( $this->sent(), 0 ) );
		wp_spam_comment( $spam );
		$this->assertCount( 1, $this->sent() );

		// Approved, then trashed and restored: announced once.
		$trash = $this->comment();
		$this->assertCount( 2, $this->sent() );
		wp_trash_comment( $trash );
		$this->assertCount( 2, $this->sent() );
		wp_untrash_comment( $trash );
		$this->assertCount( 2, $this->sent() );

		$this->sent = array();
		$this->set_settings( array( 'events' => array( 'post_published' ) ) );
		$this->comment();
		$this->comment( array( 'comment_approved' => 0 ) );
		$this->assertSame( array(), $this->sent() );
		RTET_Sender::flush( true );
	}

	public function test_a_comment_stored_and_marked_as_spam_in_one_request_goes_nowhere() {
		$this->use_http_fallback();
		// What the REST API does for a comment created with status "spam": insert, then change the status.
		$id = $this->comment();
		wp_spam_comment( $id );
		$held = $this->comment( array( 'comment_approved' => 0 ) );
		wp_trash_comment( $held );
		$this->assertSame( array(), $this->sent() );
	}

	public function test_a_comment_on_a_private_post_goes_to_its_channel_never_to_public() {
		$this->use_http_fallback();
		wp_update_post(
			array(
				'ID'          => $this->post,
				'post_status' => 'private',
			)
		);
		$this->sent = array();
		$this->filter(
			'rtet_event_channels',
			static function ( $channels ) {
				$channels[] = 'public';
				return $channels;
			}
		);
		$this->comment();
		$sent = $this->sent();
		$this->assertSame( array( 'post.' . $this->post ), $sent[0][1] );
		RTET_Sender::flush( true );
	}

	public function test_the_comments_title_block_is_marked_for_its_post() {
		$GLOBALS['post'] = get_post( $this->post ); // phpcs:ignore WordPress.WP.GlobalVariablesOverride
		setup_postdata( $GLOBALS['post'] );
		$block = array(
			'blockName' => 'core/comments-title',
			'attrs'     => array( 'level' => 3 ),
		);
		$this->assertSame(
			'<h3 data-rtet-comments-title="' . $this->post . '" id="comments">One response</h3>',
			RTET_Comments::mark_comments_title( '<h3 id="comments">One response</h3>', $block )
		);
		$block['attrs']['showCommentsCount'] = false;
		$this->assertSame( '<h3 id="comments">Responses</h3>', RTET_Comments::mark_comments_title( '<h3 id="comments">Responses</h3>', $block ) );
		wp_reset_postdata();
	}

	/**
	 * @dataProvider transports
	 *
	 * @param string $transport Transport.
	 */
	public function test_a_save_goes_to_the_posts_editors_with_a_link_to_the_new_revision( $transport ) {
		$this->use_transport( $transport );
		$editor = self::create_user( 'editor' );
		wp_set_current_user( $editor->ID );
		self::settle();
		$this->sent = array();
		$stored     = self::relay_metric( 'rtet_events_published_total' );
		wp_update_post(
			array(
				'ID'           => $this->post,
				'post_content' => 'Edited by the editor',
			)
		);
		$saves = array_values( array_filter( $this->sent(), static fn( $s ) => 'post_saved' === $s[0] ) );
		$this->assertCount( 1, $saves );
		$this->assertSame( array( 'post.' . $this->post . '.editors' ), $saves[0][1], 'never to public or the readers' );
		$this->assertSame( $editor->ID, $saves[0][2]['by'] );
		$this->assertSame( $editor->display_name, $saves[0][2]['by_name'] );
		$revisions = wp_get_post_revisions( $this->post );
		$latest    = reset( $revisions );
		$this->assertSame( 'Edited by the editor', $latest->post_content );
		$this->assertSame( admin_url( 'revision.php?revision=' . $latest->ID ), $saves[0][2]['revision_link'] );
		self::deliver( $transport );
		// post_updated to public and post_saved to the editors.
		$this->assertSame( $stored + 2, self::relay_metric( 'rtet_events_published_total' ) );
	}

	public function test_new_posts_autosaves_and_a_switched_off_event_send_no_save() {
		$this->use_http_fallback();
		$editor = self::create_user( 'editor' );
		wp_set_current_user( $editor->ID );
		$this->sent = array();
		$draft      = (int) wp_insert_post( array( 'post_title' => 'New draft' ) );
		wp_create_post_autosave(
			array(
				'post_ID'      => $draft,
				'post_type'    => 'post',
				'post_title'   => 'New draft',
				'post_content' => 'autosaved',
			)
		);
		$this->assertSame( array(), $this->sent() );

		wp_update_post(
			array(
				'ID'           => $draft,
				'post_content' => 'saved',
			)
		);
		$this->assertCount( 1, $this->sent(), 'a draft save reaches its editors' );

		$this->set_settings( array( 'events' => array( 'post_published' ) ) );
		wp_update_post(
			array(
				'ID'           => $draft,
				'post_content' => 'saved again',
			)
		);
		$this->assertCount( 1, $this->sent() );
		RTET_Sender::flush( true );
	}
}
