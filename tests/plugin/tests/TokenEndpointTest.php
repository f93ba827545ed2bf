<?php
/**
 * `GET /wp-json/rtet/v1/token`: which channels each kind of user gets, the
 * token's claims and signature, and what happens when the extension cannot sign.
 *
 * @package real-time-event-trigger
 */

/**
 * The token endpoint.
 */
class TokenEndpointTest extends RTET_Test_Case {

	/**
	 * Asks the endpoint as the current user (a REST request inside WordPress).
	 *
	 * @param mixed $posts   The `posts` parameter (post IDs the page wants channels for), or null for none.
	 * @param mixed $editing The `editing` parameter (the post open in the block editor), or null for none.
	 * @return WP_REST_Response
	 */
	private static function ask( $posts = null, $editing = null ) {
		$request = new WP_REST_Request( 'GET', '/rtet/v1/token' );
		if ( null !== $posts ) {
			$request->set_param( 'posts', $posts );
		}
		if ( null !== $editing ) {
			$request->set_param( 'editing', $editing );
		}
		return rest_do_request( $request );
	}

	/**
	 * A token's claims, after checking its HS256 signature with the site's key.
	 *
	 * @param string $token JWT.
	 * @return array
	 */
	private static function verified_claims( $token ) {
		$parts = explode( '.', $token );
		self::assertCount( 3, $parts );
		$b64 = static function ( $s ) {
			return base64_decode( strtr( $s, '-_', '+/' ) ); // phpcs:ignore
		};
		self::assertEquals( array( 'alg' => 'HS256', 'typ' => 'JWT' ), json_decode( $b64( $parts[0] ), true ) );
		$expected = hash_hmac( 'sha256', $parts[0] . '.' . $parts[1], getenv( 'RTET_API_KEY' ), true );
		self::assertTrue( hash_equals( $expected, $b64( $parts[2] ) ), 'signed with the site key' );
		return json_decode( $b64( $parts[1] ), true );
	}

	/**
	 * Channels granted to the current user, checked against the token's own claims.
	 *
	 * @param mixed $posts The `posts` parameter, or null for none.
	 * @return string[]
	 */
	private function granted( $posts = null ) {
		$res = self::ask( $posts );
		$this->assertSame( 200, $res->get_status(), wp_json_encode( $res->get_data() ) );
		$body   = $res->get_data();
		$claims = self::verified_claims( $body['token'] );
		$this->assertSame( $body['channels'], $claims['channels'] );
		$this->assertSame( RTET_Token::TTL, $claims['exp'] - $claims['iat'] );
		$this->assertSame( $claims['exp'], $body['expires'] );
		$this->assertSame( RTET_Settings::browser_url(), $body['url'] );
		return $body['channels'];
	}

	public function test_a_visitor_gets_public_only() {
		$this->assertSame( array( 'public' ), $this->granted() );
	}

	public function test_a_subscriber_gets_public_their_own_channel_and_their_role() {
		$user = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.subscriber' ), $this->granted() );
	}

	public function test_an_author_gets_no_capability_channel() {
		$user = self::create_user( 'author' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.author' ), $this->granted() );
	}

	public function test_an_editor_gets_the_editor_role_and_the_capability_channels_of_editors() {
		$user = self::create_user( 'editor' );
		wp_set_current_user( $user->ID );
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.editor', 'cap.moderate_comments', 'cap.edit_others_posts' ), $this->granted() );
	}

	public function test_an_administrator_gets_the_administrator_channel_and_every_capability_channel() {
		$user = self::create_user( 'administrator' );
		wp_set_current_user( $user->ID );
		$this->assertSame(
			array( 'public', 'user.' . $user->ID, 'role.administrator', 'cap.moderate_comments', 'cap.edit_others_posts', 'cap.manage_options', 'cap.list_users' ),
			$this->granted()
		);
	}

	/**
	 * For every kind of user, each `cap.` and `post.` channel granted is one current_user_can() allows, and each one it allows is granted.
	 */
	public function test_every_role_gets_exactly_the_capability_and_post_channels_current_user_can_allows() {
		$author  = self::create_user( 'author' );
		$posts   = $this->posts_of_every_kind( $author->ID );
		$ids     = array_values( $posts );
		$checked = 0;
		foreach ( array( null, 'subscriber', 'contributor', 'author', 'editor', 'administrator' ) as $role ) {
			$user = null === $role ? null : ( 'author' === $role ? $author : self::create_user( $role ) );
			wp_set_current_user( $user ? $user->ID : 0 );
			$granted = $this->granted( implode( ',', $ids ) );
			foreach ( RTET_Channels::CAPABILITIES as $cap ) {
				$this->assertSame( current_user_can( $cap ), in_array( 'cap.' . $cap, $granted, true ), ( $role ?? 'visitor' ) . " and cap.$cap" );
				++$checked;
			}
			foreach ( $posts as $kind => $id ) {
				$post     = get_post( $id );
				$readable = $user ? current_user_can( 'read_post', $id ) && ! post_password_required( $post ) : RTET_Events::is_public_post( $post );
				$this->assertSame( $readable, in_array( "post.$id", $granted, true ), ( $role ?? 'visitor' ) . " reading the $kind post" );
				$this->assertSame( (bool) $user && current_user_can( 'edit_post', $id ), in_array( "post.$id.editors", $granted, true ), ( $role ?? 'visitor' ) . " editing the $kind post" );
				$checked += 2;
			}
		}
		$this->assertSame( 6 * ( 4 + 2 * count( $posts ) ), $checked );
	}

	/**
	 * One post of each kind that matters for who may read it, by `$author`.
	 *
	 * @param int $author Author's user ID.
	 * @return int[] Kind => post ID.
	 */
	private function posts_of_every_kind( $author ) {
		$make = static function ( $status, $extra = array() ) use ( $author ) {
			return (int) wp_insert_post( array_merge( array( 'post_title' => "Token $status", 'post_status' => $status, 'post_author' => $author ), $extra ) );
		};
		return array(
			'public'             => $make( 'publish' ),
			'private'            => $make( 'private' ),
			'draft'              => $make( 'draft' ),
			'password-protected' => $make( 'publish', array( 'post_password' => 'secret' ) ),
		);
	}

	/**
	 * The claims of the token the current user gets on the block editor's page of `$post`.
	 *
	 * @param int $post Post ID.
	 * @return array
	 */
	private function editor_page_claims( $post ) {
		$res = self::ask( (string) $post, (string) $post );
		$this->assertSame( 200, $res->get_status(), wp_json_encode( $res->get_data() ) );
		return self::verified_claims( $res->get_data()['token'] );
	}

	/**
	 * Editor awareness: on the block editor's page, only users who may edit
	 * the post become presence members of its editors' channel, and others
	 * see of them a display name and an avatar URL, nothing else; with both signers.
	 */
	public function test_only_users_who_may_edit_a_post_are_members_of_its_editors_presence_with_name_and_avatar_only() {
		foreach ( array( 'extension', 'fallback' ) as $signer ) {
			if ( 'fallback' === $signer ) {
				$this->use_http_fallback();
			} elseif ( ! RTET_Sender::extension_available() ) {
				continue;
			}
			$author = self::create_user( 'author' );
			$post   = (int) wp_insert_post( array( 'post_title' => 'Shared', 'post_status' => 'draft', 'post_author' => $author->ID ) );
			// Straight into the table, as a plugin or an import could write it: with a control character.
			global $wpdb;
			$wpdb->update( $wpdb->users, array( 'display_name' => "Zo\u{00eb} \u{00c5}lander\x07" . str_repeat( 'x', 100 ) ), array( 'ID' => $author->ID ) );
			clean_user_cache( $author->ID );
			$author = get_user_by( 'id', $author->ID );
			wp_set_current_user( $author->ID );
			$claims = $this->editor_page_claims( $post );
			$this->assertSame( array( 'sub', 'channels', 'iat', 'exp', 'presence', 'info' ), array_keys( $claims ), $signer );
			$this->assertSame( array( "post.$post.editors" ), $claims['presence'], $signer );
			$this->assertSame( array( 'name', 'avatar' ), array_keys( $claims['info'] ), "$signer: name and avatar, nothing else" );
			$this->assertSame( RTET_Protocol::MEMBER_NAME_MAX_CHARS, mb_strlen( $claims['info']['name'] ), "$signer: the name is cut to the relay's limit" );
			$this->assertStringStartsWith( "Zo\u{00eb} \u{00c5}lander x", $claims['info']['name'], "$signer: a control character is no part of the name" );
			$this->assertSame( get_avatar_url( $author->ID, array( 'size' => 48 ) ), $claims['info']['avatar'], $signer );
			$this->assertMatchesRegularExpression( '#^https?://#', $claims['info']['avatar'], $signer );

			$editor = self::create_user( 'editor' );
			wp_set_current_user( $editor->ID );
			$this->assertSame( array( "post.$post.editors" ), $this->editor_page_claims( $post )['presence'], "$signer: an editor may edit others' posts" );

			// Asked for, not granted: a subscriber, and an author of another post.
			foreach ( array( 'subscriber', 'author' ) as $role ) {
				wp_set_current_user( self::create_user( $role )->ID );
				$claims = $this->editor_page_claims( $post );
				$this->assertArrayNotHasKey( 'presence', $claims, "$signer: $role" );
				$this->assertArrayNotHasKey( 'info', $claims, "$signer: $role" );
				$this->assertNotContains( "post.$post.editors", $claims['channels'], "$signer: $role" );
			}
			// A visitor is never a member.
			wp_set_current_user( 0 );
			$published = (int) wp_insert_post( array( 'post_title' => 'Public', 'post_status' => 'publish', 'post_author' => $author->ID ) );
			$this->assertSame( array( 'sub', 'channels', 'iat', 'exp' ), array_keys( $this->editor_page_claims( $published ) ), "$signer: visitor" );
			// The author reading the post, not editing it, is no member either.
			wp_set_current_user( $author->ID );
			$res = self::ask( (string) $post );
			$this->assertArrayNotHasKey( 'presence', self::verified_claims( $res->get_data()['token'] ), "$signer: not in the editor" );
		}
	}

	/**
	 * The readers badge: off, no token shows counts; on, a page's token shows
	 * the counts of each post it asked for and may read, and never makes
	 * anyone a member there (no identity on a reader's page); with both signers.
	 */
	public function test_with_the_readers_badge_on_a_reader_is_shown_the_counts_of_the_post_and_no_one_is_listed() {
		$author = self::create_user( 'author' );
		$posts  = $this->posts_of_every_kind( $author->ID );
		$asked  = implode( ',', $posts );
		foreach ( array( 'extension', 'fallback' ) as $signer ) {
			if ( 'fallback' === $signer ) {
				$this->use_http_fallback();
			} elseif ( ! RTET_Sender::extension_available() ) {
				continue;
			}
			$this->set_settings( array( 'readers_badge' => false ) );
			wp_set_current_user( 0 );
			$this->assertArrayNotHasKey( 'presence_counts', self::verified_claims( self::ask( $asked )->get_data()['token'] ), "$signer: off by default" );

			$this->set_settings( array( 'readers_badge' => true ) );
			$claims = self::verified_claims( self::ask( $asked )->get_data()['token'] );
			$this->assertSame( array( 'sub', 'channels', 'iat', 'exp', 'presence_counts' ), array_keys( $claims ), "$signer: a visitor" );
			$this->assertSame( array( 'post.' . $posts['public'] ), $claims['presence_counts'], "$signer: only the post the visitor may read" );

			wp_set_current_user( self::create_user( 'subscriber' )->ID );
			$claims = self::verified_claims( self::ask( $asked )->get_data()['token'] );
			$this->assertSame( array( 'sub', 'channels', 'iat', 'exp', 'presence_counts' ), array_keys( $claims ), "$signer: a subscriber is counted, never listed" );
			$this->assertSame( array( 'post.' . $posts['public'] ), $claims['presence_counts'], $signer );

			// The author in the editor: a member of the editors' channel only, counted on the readers' one.
			wp_set_current_user( $author->ID );
			$claims = self::verified_claims( self::ask( (string) $posts['draft'], (string) $posts['draft'] )->get_data()['token'] );
			$this->assertSame( array( 'post.' . $posts['draft'] . '.editors' ), $claims['presence'], $signer );
			$this->assertSame( array( 'post.' . $posts['draft'] ), $claims['presence_counts'], $signer );
			$this->assertSame( array( 'sub', 'channels', 'iat', 'exp', 'presence', 'presence_counts', 'info' ), array_keys( $claims ), "$signer: the signers' order" );
		}
	}

	public function test_a_visitor_gets_the_channel_of_a_public_post_and_not_of_a_private_draft_or_protected_one() {
		$author = self::create_user( 'author' );
		$posts  = $this->posts_of_every_kind( $author->ID );
		$this->assertSame( array( 'public', 'post.' . $posts['public'] ), $this->granted( implode( ',', $posts ) ) );
	}

	public function test_a_subscriber_asking_for_a_private_post_gets_no_grant_for_it() {
		$author = self::create_user( 'author' );
		$posts  = $this->posts_of_every_kind( $author->ID );
		$user   = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$granted = $this->granted( array( (string) $posts['private'], (string) $posts['public'] ) );
		$this->assertNotContains( 'post.' . $posts['private'], $granted );
		$this->assertNotContains( 'post.' . $posts['private'] . '.editors', $granted );
		$this->assertContains( 'post.' . $posts['public'], $granted );
		$this->assertNotContains( 'post.' . $posts['public'] . '.editors', $granted, 'readers are not told of saves' );
	}

	public function test_the_author_of_a_private_post_and_an_editor_get_its_channels() {
		$author = self::create_user( 'author' );
		$posts  = $this->posts_of_every_kind( $author->ID );
		foreach ( array( $author, self::create_user( 'editor' ) ) as $user ) {
			wp_set_current_user( $user->ID );
			$granted = $this->granted( (string) $posts['private'] );
			$this->assertContains( 'post.' . $posts['private'], $granted );
			$this->assertContains( 'post.' . $posts['private'] . '.editors', $granted );
		}
	}

	public function test_no_filter_can_grant_a_capability_or_post_channel_the_user_may_not_have() {
		$author = self::create_user( 'author' );
		$posts  = $this->posts_of_every_kind( $author->ID );
		$user   = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$this->filter(
			'rtet_token_channels',
			static function ( $channels ) use ( $posts ) {
				return array_merge( $channels, array( 'cap.manage_options', 'cap.edit_posts', 'role.administrator', 'user.1', 'post.' . $posts['private'], 'post.' . $posts['public'] . '.editors', 'post.x', 'team.blue' ) );
			}
		);
		$this->assertSame( array( 'public', 'user.' . $user->ID, 'role.subscriber', 'team.blue' ), $this->granted() );
	}

	public function test_the_capability_list_is_filterable_and_still_checked() {
		$user = self::create_user( 'author' );
		wp_set_current_user( $user->ID );
		$this->filter(
			'rtet_capability_channels',
			static function ( $caps ) {
				return array_merge( $caps, array( 'publish_posts', 'manage_network' ) );
			}
		);
		$granted = $this->granted();
		$this->assertContains( 'cap.publish_posts', $granted );
		$this->assertNotContains( 'cap.manage_network', $granted );
	}

	public function test_post_ids_are_bounded_and_anything_that_is_not_one_is_ignored() {
		$ids = array();
		for ( $i = 0; $i < RTET_Channels::MAX_POSTS + 5; $i++ ) {
			$ids[] = (int) wp_insert_post( array( 'post_title' => "Many $i", 'post_status' => 'publish' ) );
		}
		$granted = $this->granted( 'x,-1,0,1e3,' . implode( ',', $ids ) );
		$posts   = preg_grep( '/^post\./', $granted );
		$this->assertCount( RTET_Channels::MAX_POSTS, $posts );
		$this->assertSame( 'post.' . $ids[0], reset( $posts ) );
		$this->assertSame( array( 'public' ), $this->granted( array( array( 1 ), 'post.1' ) ) );
	}

	public function test_a_role_whose_channel_name_would_be_too_long_is_left_out() {
		$user = self::create_user( 'subscriber' );
		$long = str_repeat( 'r', 124 ); // role.<124> is 129 characters, one over the channel limit.
		add_role( $long, 'Long' );
		add_role( substr( $long, 1 ), 'Long enough' );
		try {
			$user->add_role( $long );
			$user->add_role( substr( $long, 1 ) );
			wp_set_current_user( $user->ID );
			$granted = $this->granted();
			$this->assertNotContains( 'role.' . $long, $granted );
			$this->assertContains( 'role.' . substr( $long, 1 ), $granted );
		} finally {
			remove_role( $long );
			remove_role( substr( $long, 1 ) );
		}
	}

	public function test_the_channels_and_lifetime_filters_apply_and_the_lifetime_is_clamped() {
		$user = self::create_user( 'subscriber' );
		wp_set_current_user( $user->ID );
		$this->filter(
			'rtet_token_channels',
			static function ( $channels, $who ) use ( $user ) {
				return $who && $who->ID === $user->ID ? array_merge( $channels, array( 'team.blue' ) ) : $channels;
			},
			10,
			2
		);
		$this->filter(
			'rtet_token_ttl',
			static function () {
				return 999999;
			}
		);
		$body   = self::ask()->get_data();
		$claims = self::verified_claims( $body['token'] );
		$this->assertContains( 'team.blue', $claims['channels'] );
		$this->assertSame( 3600, $claims['exp'] - $claims['iat'] );
	}

	public function test_over_http_a_visitor_asking_for_a_public_post_gets_its_channel_uncached() {
		$id  = (int) wp_insert_post( array( 'post_title' => 'Over HTTP', 'post_status' => 'publish' ) );
		$res = wp_remote_get( add_query_arg( 'posts', (string) $id, rest_url( 'rtet/v1/token' ) ) );
		$this->assertSame( 200, wp_remote_retrieve_response_code( $res ) );
		$this->assertStringContainsString( 'no-store', wp_remote_retrieve_header( $res, 'cache-control' ) );
		$body = json_decode( wp_remote_retrieve_body( $res ), true );
		$this->assertSame( array( 'public', 'post.' . $id ), self::verified_claims( $body['token'] )['channels'] );
	}

	public function test_over_http_a_logged_out_request_gets_public_and_is_not_cached() {
		$res = wp_remote_get( rest_url( 'rtet/v1/token' ) );
		$this->assertSame( 200, wp_remote_retrieve_response_code( $res ) );
		$body = json_decode( wp_remote_retrieve_body( $res ), true );
		$this->assertSame( array( 'public' ), $body['channels'] );
		$this->assertStringContainsString( 'no-store', wp_remote_retrieve_header( $res, 'cache-control' ) );
		$this->assertSame( array( 'public' ), self::verified_claims( $body['token'] )['channels'] );
	}

	public function test_when_the_extension_cannot_sign_no_token_is_issued_and_site_health_says_why() {
		if ( ! function_exists( 'rtet_sign_token' ) ) {
			$this->markTestSkipped( 'rtet.so is not built' );
		}
		delete_option( RTET_Token::FAILURE_OPTION );
		$this->assertSame( 'good', RTET_Health::test_token_signing()['status'] );

		// A filter grants so many channels that the token would be over the relay's size limit: the extension refuses to sign it.
		$refuse = static function ( $channels ) {
			for ( $i = 0; $i < 100; $i++ ) {
				$channels[] = 'team.' . str_repeat( 'x', 60 ) . $i;
			}
			return $channels;
		};
		add_filter( 'rtet_token_channels', $refuse );
		$log = ini_get( 'error_log' );
		$tmp = tempnam( sys_get_temp_dir(), 'rtet-log' );
		ini_set( 'error_log', $tmp ); // phpcs:ignore
		try {
			$res = self::ask();
		} finally {
			ini_set( 'error_log', $log ); // phpcs:ignore
			remove_filter( 'rtet_token_channels', $refuse );
		}
		$this->assertSame( 503, $res->get_status() );
		$this->assertSame( 'rtet_signing_failed', $res->as_error()->get_error_code() );
		$this->assertArrayNotHasKey( 'token', (array) $res->get_data() );
		$this->assertStringContainsString( 'could not sign a token', (string) file_get_contents( $tmp ) );
		unlink( $tmp );
		$health = RTET_Health::test_token_signing();
		$this->assertSame( 'critical', $health['status'] );
		$this->assertStringContainsString( 'refuses to sign browser tokens', $health['description'] );

		// The next token the extension signs clears it.
		$this->assertSame( 200, self::ask()->get_status() );
		$this->assertSame( 'good', RTET_Health::test_token_signing()['status'] );
	}
}
