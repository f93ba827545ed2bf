<?php
/**
 * The HTTP fallback's retry queue: events the relay did not take yet, one
 * row each in the `{prefix}rtet_pending` table.
 *
 * Several php-fpm workers flush at the same time, so a worker takes rows by
 * claiming them in one UPDATE (a lease: its own random claim and a deadline)
 * and reads back only what it claimed. No two workers send the same row, and
 * no worker's write can overwrite another's: each event is its own row, added
 * with one INSERT and removed with one DELETE of its own id. A worker that
 * dies while holding a lease loses nothing; the rows come back when the lease
 * runs out.
 *
 * Plugin versions before the table kept undelivered events in the
 * `rtet_pending_events` option; install() moves them into the table once,
 * in one transaction that also deletes the option, so no event is lost or
 * moved twice when several workers upgrade at the same time.
 *
 * @package real-time-event-trigger
 */

defined( 'ABSPATH' ) || exit;

/**
 * The retry queue.
 */
class RTET_Queue {

	/** Table name without the site's prefix. */
	const TABLE = 'rtet_pending';

	/** Schema version; a different stored version re-runs dbDelta() and the legacy migration. */
	const SCHEMA_VERSION = '2';

	/** The option in which plugin versions before the table kept undelivered events. */
	const LEGACY_OPTION = 'rtet_pending_events';

	/** Option holding the installed schema version. */
	const SCHEMA_OPTION = 'rtet_queue_schema';

	/** How long a claim holds its rows, in seconds (longer than a flush can take). */
	const LEASE = 120;

	/**
	 * The table's full name.
	 *
	 * @return string
	 */
	public static function table() {
		global $wpdb;
		return $wpdb->prefix . self::TABLE;
	}

	/**
	 * Creates or updates the table when its schema is not the current one, and
	 * moves the legacy option's events into it. Cheap when it is current: one
	 * autoloaded option (RTET_Plugin calls this on every load, so an upgrade
	 * by replacing the files, which runs no activation hook, migrates too).
	 */
	public static function install() {
		if ( get_option( self::SCHEMA_OPTION ) === self::SCHEMA_VERSION ) {
			return;
		}
		global $wpdb;
		require_once ABSPATH . 'wp-admin/includes/upgrade.php';
		$table   = self::table();
		$charset = $wpdb->get_charset_collate();
		dbDelta(
			"CREATE TABLE {$table} (
  id bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  event_id varchar(64) NOT NULL,
  item longtext NOT NULL,
  created_at bigint(20) NOT NULL,
  claim char(32) NOT NULL DEFAULT '',
  claim_until bigint(20) NOT NULL DEFAULT 0,
  PRIMARY KEY  (id),
  KEY claim_until (claim_until)
) {$charset};"
		);
		$moved = self::migrate_legacy_option();
		if ( false === $moved ) {
			// Not moved (a database error): the option stays, and the next load tries again.
			return;
		}
		if ( $moved > 0 ) {
			RTET_Sender::schedule_retry();
		}
		update_option( self::SCHEMA_OPTION, self::SCHEMA_VERSION, true );
	}

	/**
	 * Moves the events of the legacy `rtet_pending_events` option into the
	 * table, oldest first, and deletes the option, all in one transaction:
	 * the option's row is read FOR UPDATE, so a second worker doing the same
	 * waits, then finds no option and moves nothing. Entries that are not
	 * events are dropped; expired ones are dropped by trim().
	 *
	 * @return int|false How many events were moved, or false when the database refused (nothing changed).
	 */
	public static function migrate_legacy_option() {
		global $wpdb;
		$wpdb->query( 'START TRANSACTION' ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
		$raw = $wpdb->get_var( $wpdb->prepare( "SELECT option_value FROM {$wpdb->options} WHERE option_name = %s FOR UPDATE", self::LEGACY_OPTION ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
		if ( null === $raw ) {
			$wpdb->query( 'COMMIT' ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
			return '' === $wpdb->last_error ? 0 : false;
		}
		// Our own option, but read as data: no objects.
		$items = is_serialized( $raw ) ? @unserialize( trim( $raw ), array( 'allowed_classes' => false ) ) : null; // phpcs:ignore WordPress.PHP.NoSilencedErrors,WordPress.PHP.DiscouragedPHPFunctions.serialize_unserialize
		$moved = 0;
		foreach ( is_array( $items ) ? $items : array() as $item ) {
			if ( ! self::is_event_item( $item ) ) {
				continue;
			}
			$item = array(
				'id'       => $item['id'],
				'event'    => $item['event'],
				'data'     => $item['data'] ?? null,
				'channels' => array_values( $item['channels'] ),
				'time'     => $item['time'],
			);
			$ok = self::insert( $item );
			if ( false === $ok ) {
				$wpdb->query( 'ROLLBACK' ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
				return false;
			}
			++$moved;
		}
		if ( false === $wpdb->delete( $wpdb->options, array( 'option_name' => self::LEGACY_OPTION ), array( '%s' ) ) ) { // phpcs:ignore WordPress.DB.DirectDatabaseQuery
			$wpdb->query( 'ROLLBACK' ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
			return false;
		}
		$wpdb->query( 'COMMIT' ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery

		// The row went past delete_option(): forget it in the object cache too.
		wp_cache_delete( self::LEGACY_OPTION, 'options' );
		$alloptions = wp_load_alloptions( true );
		if ( isset( $alloptions[ self::LEGACY_OPTION ] ) ) {
			unset( $alloptions[ self::LEGACY_OPTION ] );
			wp_cache_set( 'alloptions', $alloptions, 'options' );
		}
		if ( $moved > 0 ) {
			self::trim();
		}
		return $moved;
	}

	/**
	 * Stores one event as a row of the queue.
	 *
	 * @param array $item Event: id, event, data, channels, time.
	 * @return int|false Rows inserted, or false on a database error.
	 */
	private static function insert( array $item ) {
		global $wpdb;
		return $wpdb->insert( // phpcs:ignore WordPress.DB.DirectDatabaseQuery
			self::table(),
			array(
				'event_id'   => (string) $item['id'],
				'item'       => wp_json_encode( $item ),
				'created_at' => (int) $item['time'],
			),
			array( '%s', '%s', '%d' )
		);
	}

	/**
	 * Whether a value is a queued event: id, event, channels and time of the right shapes.
	 *
	 * @param mixed $item Value.
	 * @return bool
	 */
	private static function is_event_item( $item ) {
		return is_array( $item )
			&& isset( $item['id'], $item['event'], $item['channels'], $item['time'] )
			&& RTET_Protocol::is_id( $item['id'] )
			&& RTET_Protocol::is_event( $item['event'] )
			&& is_array( $item['channels'] ) && array() !== $item['channels']
			&& count( array_filter( $item['channels'], array( 'RTET_Protocol', 'is_channel' ) ) ) === count( $item['channels'] )
			&& is_int( $item['time'] );
	}

	/**
	 * Drops the table (uninstall).
	 */
	public static function uninstall() {
		global $wpdb;
		$wpdb->query( 'DROP TABLE IF EXISTS ' . self::table() ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared,WordPress.DB.DirectDatabaseQuery
		delete_option( self::SCHEMA_OPTION );
	}

	/**
	 * Adds events at the end of the queue, then drops what is too old or beyond the size cap.
	 *
	 * @param array[] $items Events (id, event, data, channels, time).
	 */
	public static function push( array $items ) {
		if ( empty( $items ) ) {
			return;
		}
		self::install();
		foreach ( $items as $item ) {
			self::insert( $item );
		}
		self::trim();
	}

	/**
	 * Claims the oldest unclaimed events, at most `$limit`, for this caller alone.
	 *
	 * @param int $limit How many.
	 * @return array{claim: string, items: array[]} The claim (for release()) and the events, oldest first, each with its `row`.
	 */
	public static function claim( $limit = RTET_Sender::PENDING_MAX ) {
		self::install();
		global $wpdb;
		$table = self::table();
		$claim = bin2hex( random_bytes( 16 ) );
		$now   = time();
		// One statement: InnoDB locks each row it changes, so two workers never claim the same row.
		$wpdb->query( // phpcs:ignore WordPress.DB.DirectDatabaseQuery
			$wpdb->prepare(
				"UPDATE {$table} SET claim = %s, claim_until = %d WHERE claim_until < %d ORDER BY id LIMIT %d", // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared
				$claim,
				$now + self::LEASE,
				$now,
				(int) $limit
			)
		);
		$rows  = $wpdb->get_results( $wpdb->prepare( "SELECT id, item FROM {$table} WHERE claim = %s ORDER BY id", $claim ), ARRAY_A ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared,WordPress.DB.DirectDatabaseQuery
		$items = array();
		foreach ( (array) $rows as $row ) {
			$item = json_decode( (string) $row['item'], true );
			if ( ! is_array( $item ) || ! isset( $item['id'], $item['event'], $item['channels'], $item['time'] ) ) {
				// Not ours to understand: drop it rather than retry it forever.
				self::remove( (int) $row['id'] );
				continue;
			}
			$item['row'] = (int) $row['id'];
			$items[]     = $item;
		}
		return array(
			'claim' => $claim,
			'items' => $items,
		);
	}

	/**
	 * Removes one event (delivered, refused or expired).
	 *
	 * @param int $row Row id.
	 */
	public static function remove( $row ) {
		global $wpdb;
		$wpdb->delete( self::table(), array( 'id' => (int) $row ), array( '%d' ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
	}

	/**
	 * Gives the rows of a claim back to the queue, for the next flush.
	 *
	 * @param string $claim The claim from claim().
	 */
	public static function release( $claim ) {
		global $wpdb;
		$wpdb->update( self::table(), array( 'claim' => '', 'claim_until' => 0 ), array( 'claim' => (string) $claim ), array( '%s', '%d' ), array( '%s' ) ); // phpcs:ignore WordPress.DB.DirectDatabaseQuery
	}

	/**
	 * How many events wait.
	 *
	 * @return int
	 */
	public static function size() {
		self::install();
		global $wpdb;
		return (int) $wpdb->get_var( 'SELECT COUNT(*) FROM ' . self::table() ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared,WordPress.DB.DirectDatabaseQuery
	}

	/**
	 * The waiting events' ids, oldest first.
	 *
	 * @return string[]
	 */
	public static function ids() {
		self::install();
		global $wpdb;
		return array_map( 'strval', (array) $wpdb->get_col( 'SELECT event_id FROM ' . self::table() . ' ORDER BY id' ) ); // phpcs:ignore WordPress.DB.PreparedSQL.NotPrepared,WordPress.DB.DirectDatabaseQuery
	}

	/**
	 * Drops events older than the relay's history window and the oldest beyond the size cap.
	 */
	private static function trim() {
		global $wpdb;
		$table = self::table();
		$wpdb->query( $wpdb->prepare( "DELETE FROM {$table} WHERE created_at < %d", time() - RTET_Sender::PENDING_TTL ) ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared,WordPress.DB.DirectDatabaseQuery
		$keep_from = $wpdb->get_var( $wpdb->prepare( "SELECT id FROM {$table} ORDER BY id DESC LIMIT 1 OFFSET %d", RTET_Sender::PENDING_MAX - 1 ) ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared,WordPress.DB.DirectDatabaseQuery
		if ( null !== $keep_from ) {
			$wpdb->query( $wpdb->prepare( "DELETE FROM {$table} WHERE id < %d", (int) $keep_from ) ); // phpcs:ignore WordPress.DB.PreparedSQL.InterpolatedNotPrepared,WordPress.DB.DirectDatabaseQuery
		}
	}
}
