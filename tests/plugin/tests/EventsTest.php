<?php
/**
 * The built-in post events and the filters every event goes through:
 * post_published once when a post first goes public, post_updated for later
 * edits, nothing public for content that is not.
 *
 * @package real-time-event-trigger
 */

/**
 * Built-in events and filters.
 */
class EventsTest extends RTET_Test_Case {

	/**
	 * Events handed to the transport during the test: [event, channels, data].
	 *
	 * @var array[]
	 */
	private $sent = array();

	protected function setUp(): void {
		parent::setUp();
		$this->sent = array();
		$this->filter(
			'rtet_event_sent',
			function ( $id, $event, $data, $channels ) {
				$this->sent[] = array( $event, $channels, $data );
			},
			10,
			4
		);
		wp_set_current_user( self::create_user( 'editor' )->ID );
		$this->sent = array(); // the editor's own user_registered
	}

	/**
	 * The events sent so far, by name, for one post.
	 *
	 * @param int $post_id Post.
	 * @return string[]
	 */
	private function events_for( $post_id ) {
		$out = array();
		foreach ( $this->sent as $s ) {
			if ( in_array( $s[0], array( 'post_published', 'post_updated' ), true ) && $s[2]['id'] === $post_id ) {
				$out[] = $s[0];
			}
		}
		return $out;
	}

	private static function post( array $fields ) {
		$id = wp_insert_post(
			array_merge(
				array(
					'post_title'   => 'Post ' . bin2hex( random_bytes( 3 ) ),
					'post_content' => 'Body',
					'post_status'  => 'draft',
				),
				$fields
			),
			true
		);
		self::assertIsInt( $id );
		return $id;
	}

	public function test_a_post_is_announced_once_when_it_first_goes_public_then_updated() {
		$id = self::post( array() );
		$this->assertSame( array(), $this->events_for( $id ), 'a draft is not announced' );

		wp_update_post( array( 'ID' => $id, 'post_status' => 'publish' ) );
		$this->assertSame( array( 'post_published' ), $this->events_for( $id ) );
		$this->assertSame( array( 'public' ), $this->sent[0][1] );
		$this->assertSame( get_the_title( $id ), $this->sent[0][2]['title'] );
		$this->assertSame( get_permalink( $id ), $this->sent[0][2]['link'] );

		wp_update_post( array( 'ID' => $id, 'post_content' => 'Edited' ) );
		$this->assertSame( array( 'post_published', 'post_updated' ), $this->events_for( $id ) );

		// Unpublished and published again: an update, never a second announcement.
		wp_update_post( array( 'ID' => $id, 'post_status' => 'draft' ) );
		wp_update_post( array( 'ID' => $id, 'post_status' => 'publish' ) );
		$this->assertSame( array( 'post_published', 'post_updated', 'post_updated' ), $this->events_for( $id ) );
	}

	public function test_a_post_trashed_or_hidden_by_a_password_and_public_again_is_an_update() {
		$trashed = self::post( array( 'post_status' => 'publish' ) );
		wp_trash_post( $trashed );
		wp_untrash_post( $trashed );
		wp_update_post( array( 'ID' => $trashed, 'post_status' => 'publish' ) );
		$this->assertSame( array( 'post_published', 'post_updated' ), $this->events_for( $trashed ) );

		$hidden = self::post( array( 'post_status' => 'publish' ) );
		wp_update_post( array( 'ID' => $hidden, 'post_password' => 'secret' ) );
		wp_update_post( array( 'ID' => $hidden, 'post_password' => '' ) );
		$this->assertSame( array( 'post_published', 'post_updated' ), $this->events_for( $hidden ) );
	}

	public function test_a_draft_published_for_the_first_time_is_announced_once() {
		$id = self::post( array() );
		wp_update_post( array( 'ID' => $id, 'post_content' => 'Still a draft' ) );
		wp_update_post( array( 'ID' => $id, 'post_status' => 'publish' ) );
		$this->assertSame( array( 'post_published' ), $this->events_for( $id ) );
	}

	public function test_a_post_published_directly_is_announced_once() {
		$id = self::post( array( 'post_status' => 'publish' ) );
		$this->assertSame( array( 'post_published' ), $this->events_for( $id ) );
	}

	public function test_private_and_password_protected_posts_never_go_to_public() {
		$private   = self::post( array( 'post_status' => 'private' ) );
		$protected = self::post( array( 'post_status' => 'publish', 'post_password' => 'secret' ) );
		wp_update_post( array( 'ID' => $protected, 'post_content' => 'Edited' ) );
		$this->assertSame( array(), $this->events_for( $private ) );
		$this->assertSame( array(), $this->events_for( $protected ) );
	}

	public function test_a_filter_cannot_send_a_private_post_to_public() {
		$this->filter(
			'rtet_event_channels',
			static function ( $channels ) {
				return array_merge( $channels, array( 'public', 'role.editor' ) );
			}
		);
		$post = get_post( self::post( array( 'post_status' => 'private' ) ) );
		RTET_Events::dispatch( 'post_updated', RTET_Events::post_data( $post ), array( 'public' ), array( 'source' => 'builtin', 'post' => $post ) );
		$this->assertSame( array( array( 'role.editor' ) ), array_column( $this->sent, 1 ) );
	}

	public function test_switched_off_events_are_not_sent() {
		$this->set_settings( array( 'events' => array( 'post_updated' ) ) );
		$id = self::post( array( 'post_status' => 'publish' ) );
		$this->assertSame( array(), $this->events_for( $id ) );
		wp_update_post( array( 'ID' => $id, 'post_content' => 'Edited' ) );
		$this->assertSame( array( 'post_updated' ), $this->events_for( $id ) );
	}

	public function test_the_data_filter_changes_or_drops_an_event() {
		$this->filter(
			'rtet_event_data',
			static function ( $data, $event ) {
				if ( 'plugin_drop' === $event ) {
					return false;
				}
				$data['extra'] = 'added';
				return $data;
			},
			10,
			2
		);
		$this->assertFalse( rtet_trigger_event( 'plugin_drop', array( 'n' => 1 ) ) );
		$id = rtet_trigger_event( 'plugin_keep', array( 'n' => 2 ), array( 'team.red' ) );
		$this->assertIsString( $id );
		$this->assertSame( array( array( 'plugin_keep', array( 'team.red' ), array( 'n' => 2, 'extra' => 'added' ) ) ), $this->sent );
	}

	public function test_an_empty_channel_list_from_a_filter_drops_the_event() {
		$this->filter( 'rtet_event_channels', '__return_empty_array' );
		$this->assertFalse( rtet_trigger_event( 'plugin_test', array() ) );
		$this->assertSame( array(), $this->sent );
	}

	public function test_invalid_names_are_refused_before_anything_is_sent() {
		foreach ( array(
			array( 'bad event', 'public', 'rtet_invalid_event' ),
			array( 'ok', 'bad channel', 'rtet_invalid_channel' ),
			array( str_repeat( 'e', 65 ), 'public', 'rtet_invalid_event' ),
			array( 'ok', str_repeat( 'c', 129 ), 'rtet_invalid_channel' ),
		) as $case ) {
			$result = rtet_trigger_event( $case[0], null, $case[1] );
			$this->assertInstanceOf( WP_Error::class, $result );
			$this->assertSame( $case[2], $result->get_error_code() );
		}
		$this->assertSame( array(), $this->sent );
	}

	public function test_user_registered_goes_to_administrators_only() {
		$user = self::create_user( 'subscriber' );
		$sent = array_values(
			array_filter(
				$this->sent,
				static function ( $s ) use ( $user ) {
					return 'user_registered' === $s[0] && $s[2]['id'] === $user->ID;
				}
			)
		);
		$this->assertCount( 1, $sent );
		$this->assertSame( array( 'role.administrator' ), $sent[0][1] );
		$this->assertSame( $user->user_email, $sent[0][2]['email'] );
	}
}
