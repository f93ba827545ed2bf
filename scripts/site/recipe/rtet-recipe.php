<?php
/**
 * Plugin Name: rtet original recipe (benchmark baseline)
 * Description: The original blog recipe, for comparison in BENCHMARKS.md only: a save_post hook that does a blocking wp_remote_post() to the relay for every published post. Not shipped.
 *
 * @package real-time-event-trigger
 */

add_action(
	'save_post',
	function ( $post_id, $post, $update ) {
		if ( 'publish' !== $post->post_status ) {
			return;
		}
		$settings = get_option( 'rtet_settings' );
		$url      = str_replace( 'ws://', 'http://', $settings['websocket_server_url'] ) . '/api/send-event';
		wp_remote_post(
			$url,
			array(
				'headers' => array( 'Content-Type' => 'application/json' ),
				'body'    => wp_json_encode(
					array(
						'type'   => 'post_published',
						'data'   => array(
							'id'    => $post_id,
							'title' => $post->post_title,
						),
						'apiKey' => $settings['api_key'],
					)
				),
			)
		);
	},
	10,
	3
);
