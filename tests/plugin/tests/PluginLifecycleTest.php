<?php
/**
 * What WordPress does with the plugin by its name: the Settings link on the
 * Plugins screen, deactivation stopping the retry job, activation setting up
 * the retry queue's table, through WordPress's own functions.
 *
 * @package real-time-event-trigger
 */

/**
 * Plugin lifecycle.
 */
class PluginLifecycleTest extends RTET_Test_Case {

	/**
	 * The plugin's name as WordPress gives it.
	 *
	 * @return string
	 */
	private static function plugin() {
		return plugin_basename( RTET_PLUGIN_FILE );
	}

	protected function tearDown(): void {
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		if ( ! is_plugin_active( self::plugin() ) ) {
			activate_plugin( self::plugin() );
		}
		wp_clear_scheduled_hook( RTET_Sender::RETRY_HOOK );
		parent::tearDown();
	}

	public function test_the_plugins_screen_shows_a_settings_link_first() {
		// As WP_Plugins_List_Table filters a plugin's row.
		$links = apply_filters( 'plugin_action_links_' . self::plugin(), array( 'deactivate' => '<a href="#">Deactivate</a>' ), self::plugin(), array(), 'all' );
		$this->assertCount( 2, $links );
		$this->assertStringContainsString( 'admin.php?page=real-time-events', reset( $links ) );
		$this->assertStringContainsString( '>Settings</a>', reset( $links ) );
	}

	public function test_deactivating_stops_the_retry_job_and_activating_sets_up_the_queue() {
		require_once ABSPATH . 'wp-admin/includes/plugin.php';
		RTET_Sender::schedule_retry();
		$this->assertNotFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ) );

		deactivate_plugins( self::plugin() );
		$this->assertFalse( is_plugin_active( self::plugin() ) );
		$this->assertFalse( wp_next_scheduled( RTET_Sender::RETRY_HOOK ), 'deactivation leaves no retry job' );

		delete_option( RTET_Queue::SCHEMA_OPTION );
		$this->assertNull( activate_plugin( self::plugin() ) );
		$this->assertTrue( is_plugin_active( self::plugin() ) );
		$this->assertSame( RTET_Queue::SCHEMA_VERSION, get_option( RTET_Queue::SCHEMA_OPTION ), 'activation sets up the retry queue' );
	}
}
