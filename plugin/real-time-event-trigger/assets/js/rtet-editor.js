/**
 * Real-time Event Trigger: save notices in the block editor.
 *
 * When someone else saves the post open in this editor, the relay brings
 * `post_saved` on `post.<ID>.editors` (rtet-client.js fires it as the
 * wp.hooks action `rtet.post_saved`), and this shows a core warning notice
 * at once, with a link to their revision, before this user overwrites it.
 * Saves by this same user (another tab) are not announced.
 *
 * Who else has the post open: the token makes this user a presence member
 * of `post.<ID>.editors` (docs/protocol.md "Presence"); the other members
 * are shown in one core info notice ("Alice is also editing"), updated on
 * `rtet.presence` / `rtet.join` / `rtet.leave` and removed when the last
 * one leaves. Members are users, so this user's other tabs are no one new.
 *
 * Settings: `window.rtetEditor` = {post, user, i18n}.
 *
 * @package real-time-event-trigger
 */
( function ( window ) {
	'use strict';

	var cfg = window.rtetEditor || {};
	var wp = window.wp || {};
	var post = Number( cfg.post );
	var user = Number( cfg.user );
	var i18n = cfg.i18n || {};

	if ( ! wp.hooks || ! wp.data || ! ( post > 0 ) ) {
		return;
	}

	/**
	 * Fills the %s placeholder.
	 *
	 * @param {string} text Text with one %s.
	 * @param {string} value Value.
	 * @return {string} The text.
	 */
	function fill( text, value ) {
		return String( text || '' ).replace( '%s', value );
	}

	/**
	 * Shows the notice for a save by someone else.
	 *
	 * @param {Object} data {id, by, by_name, revision_link}
	 */
	function onSaved( data ) {
		if ( ! data || Number( data.id ) !== post || Number( data.by ) === user ) {
			return;
		}
		var actions = [];
		if ( typeof data.revision_link === 'string' && /^https?:\/\//i.test( data.revision_link ) ) {
			actions.push( { label: i18n.viewRevision, url: data.revision_link } );
		}
		wp.data.dispatch( 'core/notices' ).createWarningNotice( fill( i18n.saved, String( data.by_name || i18n.someone ) ), {
			id: 'rtet-post-saved',
			isDismissible: true,
			actions: actions,
		} );
	}

	var channel = 'post.' + post + '.editors';
	var NOTICE = 'rtet-also-editing';
	var shown = '';

	/**
	 * Shows who else is editing, or removes the notice when no one is.
	 *
	 * @param {Object} change {channel}
	 */
	function onPresence( change ) {
		if ( ! change || change.channel !== channel || ! window.rtet || ! window.rtet.members ) {
			return;
		}
		var names = window.rtet.members( channel ).filter( function ( m ) {
			return m.sub !== String( user );
		} ).map( function ( m ) {
			return m.info && m.info.name ? m.info.name : i18n.someone;
		} );
		var text = '';
		if ( names.length === 1 ) {
			text = fill( i18n.alsoEditing, names[ 0 ] );
		} else if ( names.length > 1 ) {
			text = fill( i18n.alsoEditingMany, names.join( ', ' ) );
		}
		if ( text === shown ) {
			return;
		}
		shown = text;
		var notices = wp.data.dispatch( 'core/notices' );
		if ( text === '' ) {
			notices.removeNotice( NOTICE );
			return;
		}
		notices.createInfoNotice( text, { id: NOTICE, isDismissible: true } );
	}

	wp.hooks.addAction( 'rtet.post_saved', 'rtet-editor', onSaved );
	[ 'rtet.presence', 'rtet.join', 'rtet.leave' ].forEach( function ( name ) {
		wp.hooks.addAction( name, 'rtet-editor', onPresence );
	} );
}( window ) );
