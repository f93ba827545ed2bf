/**
 * Real-time Event Trigger: the settings page.
 *
 * - "Generate key" fills the API key field with a strong random key (made in
 *   this browser with crypto.getRandomValues; the server never prints a key).
 * - "Send test event" asks the site to send `rtet_test` to this user's
 *   channel and shows it when it comes back live through the relay (the
 *   `rtet:event` DOM event fired by rtet-client.js).
 *
 * @package real-time-event-trigger
 */
( function ( window, document ) {
	'use strict';

	var cfg = window.rtetAdmin || {};
	var i18n = cfg.i18n || {};
	var pending = {};

	/**
	 * Fills %s / %1$s placeholders.
	 *
	 * @param {string} text Text.
	 * @param {Array}  args Values.
	 * @return {string} The text.
	 */
	function format( text, args ) {
		var next = 0;
		return String( text || '' ).replace( /%(?:(\d+)\$)?s/g, function ( m, n ) {
			var v = n ? args[ Number( n ) - 1 ] : args[ next++ ];
			return v === undefined ? '' : String( v );
		} );
	}

	/**
	 * Adds a line to the test log.
	 *
	 * @param {string} text      Text.
	 * @param {string} className Class.
	 */
	function log( text, className ) {
		var list = document.getElementById( 'rtet_test_log' );
		if ( ! list ) {
			return;
		}
		var li = document.createElement( 'li' );
		li.className = className || '';
		li.textContent = text;
		list.appendChild( li );
	}

	/**
	 * A random key: 48 characters of [A-Za-z0-9].
	 *
	 * @return {string} The key.
	 */
	function randomKey() {
		var chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
		var bytes = new Uint8Array( 48 );
		window.crypto.getRandomValues( bytes );
		var out = '';
		for ( var i = 0; i < bytes.length; i++ ) {
			out += chars.charAt( bytes[ i ] % 62 );
		}
		return out;
	}

	/**
	 * Wires the buttons.
	 */
	function init() {
		var gen = document.getElementById( 'rtet_generate_key' );
		var field = document.getElementById( 'rtet_api_key' );
		if ( gen && field ) {
			gen.addEventListener( 'click', function () {
				field.value = randomKey();
				field.type = 'text';
				field.select();
				var note = document.getElementById( 'rtet_generate_note' );
				if ( note ) {
					note.textContent = i18n.generated || '';
				}
			} );
		}

		var test = document.getElementById( 'rtet_send_test' );
		if ( test ) {
			test.addEventListener( 'click', function () {
				test.disabled = true;
				log( i18n.sending );
				window
					.fetch( cfg.testUrl, {
						method: 'POST',
						credentials: 'same-origin',
						headers: { 'X-WP-Nonce': cfg.nonce, Accept: 'application/json' },
					} )
					.then( function ( res ) {
						return res.json().then( function ( body ) {
							if ( ! res.ok ) {
								throw new Error( body && body.message ? body.message : 'HTTP ' + res.status );
							}
							return body;
						} );
					} )
					.then( function ( body ) {
						if ( pending[ body.id ] === 'received' ) {
							return;
						}
						pending[ body.id ] = 'sent';
						log( format( i18n.sent, [ body.id, body.transport ] ) );
					} )
					.catch( function ( e ) {
						log( format( i18n.failed, [ e.message ] ), 'rtet-test-failed' );
					} )
					.then( function () {
						test.disabled = false;
					} );
			} );
		}

		document.addEventListener( 'rtet:event', function ( e ) {
			if ( e.detail && e.detail.event === 'rtet_test' ) {
				pending[ e.detail.id ] = 'received';
				log( format( i18n.received, [ e.detail.id ] ), 'rtet-test-received' );
			}
		} );
	}

	if ( document.readyState === 'loading' ) {
		document.addEventListener( 'DOMContentLoaded', init );
	} else {
		init();
	}
}( window, document ) );
