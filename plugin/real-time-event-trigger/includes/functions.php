<?php
/**
 * The public API for plugin developers.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

if ( ! function_exists( 'rtet_trigger_event' ) ) {
	/**
	 * Sends a real-time event to every browser subscribed to its channels.
	 *
	 * Works with or without the rtet PHP extension: with it the event is
	 * queued in the worker's pooled relay connection; without it, it is
	 * posted over HTTP at the end of the request. Either way this returns at
	 * once and never waits on the relay. The `rtet_event_data` and
	 * `rtet_event_channels` filters apply, as for the built-in events.
	 *
	 *     rtet_trigger_event( 'woo.order_paid', array( 'order' => 42 ), 'user.' . $customer_id );
	 *
	 * @param string          $event    Event name: 1-64 of [A-Za-z0-9_.:-].
	 * @param mixed           $data     Any JSON-encodable value (at most 64 KiB encoded).
	 * @param string|string[] $channels `public`, `user.<ID>`, `role.<role>`, or your own.
	 * @param array           $options  Optional: `id` (idempotency key; resends with the same id are delivered once).
	 * @return string|WP_Error|false The event id; WP_Error when not configured or invalid; false when a filter dropped it.
	 */
	function rtet_trigger_event( $event, $data = null, $channels = 'public', array $options = array() ) {
		return RTET_Events::dispatch( (string) $event, $data, (array) $channels, array( 'source' => 'custom' ), $options );
	}
}
