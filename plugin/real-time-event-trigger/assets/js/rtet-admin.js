/**
 * Real-time Event Trigger: the settings page.
 *
 * - "Generate key" fills the API key field with a strong random key (made in
 *   this browser with crypto.getRandomValues; the server never prints a key).
 * - "Send test event" asks the site to send `rtet_test` to this user's
 *   channel, says what the relay did with it (delivered, queued, refused) and
 *   shows it when it comes back live through the relay (the `rtet:event` DOM
 *   event fired by rtet-client.js). Both waits are bounded.
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
				sendTest( test );
			} );
		}

		document.addEventListener( 'rtet:event', function ( e ) {
			if ( e.detail && e.detail.event === 'rtet_test' ) {
				var waiting = pending[ e.detail.id ];
				if ( waiting === 'received' ) {
					return;
				}
				if ( waiting ) {
					clearTimeout( waiting );
				}
				pending[ e.detail.id ] = 'received';
				log( format( i18n.received, [ e.detail.id ] ), 'rtet-test-received' );
			}
		} );
	}

	/**
	 * Asks the site to send a test event, says what the relay did with it and,
	 * when delivered, waits (bounded) for it to come back live.
	 *
	 * @param {Element} button The button, disabled meanwhile.
	 */
	function sendTest( button ) {
		var requestWait = ( cfg.wait && cfg.wait.request ) || 15000;
		var echoWait = ( cfg.wait && cfg.wait.echo ) || 10000;
		var controller = window.AbortController ? new window.AbortController() : null;
		var timer = controller ? setTimeout( function () {
			controller.abort();
		}, requestWait ) : null;
		button.disabled = true;
		log( i18n.sending );
		window
			.fetch( cfg.testUrl, {
				method: 'POST',
				credentials: 'same-origin',
				headers: { 'X-WP-Nonce': cfg.nonce, Accept: 'application/json' },
				signal: controller ? controller.signal : undefined,
			} )
			.then( function ( res ) {
				return res.json().catch( function () {
					return null;
				} ).then( function ( body ) {
					if ( ! res.ok || ! body ) {
						throw new Error( body && body.message ? body.message : 'HTTP ' + res.status );
					}
					return body;
				} );
			} )
			.then( function ( body ) {
				if ( body.status === 'queued' ) {
					log( format( i18n.queued, [ body.id, body.message ] ), 'rtet-test-queued' );
					return;
				}
				if ( pending[ body.id ] === 'received' ) {
					return;
				}
				log( format( i18n.delivered, [ body.id, body.transport ] ), 'rtet-test-delivered' );
				pending[ body.id ] = setTimeout( function () {
					pending[ body.id ] = 'received';
					log( format( i18n.notSeen, [ body.id, String( echoWait / 1000 ) ] ), 'rtet-test-not-seen' );
				}, echoWait );
			} )
			.catch( function ( e ) {
				var message = e && e.name === 'AbortError' ? format( i18n.timeout, [ String( requestWait / 1000 ) ] ) : e.message;
				log( format( i18n.failed, [ message ] ), 'rtet-test-failed' );
			} )
			.then( function () {
				clearTimeout( timer );
				button.disabled = false;
			} );
	}

	if ( document.readyState === 'loading' ) {
		document.addEventListener( 'DOMContentLoaded', init );
	} else {
		init();
	}
}( window, document ) );
