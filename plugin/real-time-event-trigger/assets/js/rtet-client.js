/**
 * Real-time Event Trigger: the browser client.
 *
 * One dependency-free file. A visitor connects to the relay without a token
 * and subscribes to the anonymous channels (`public`). A logged-in user's
 * client, and a visitor's on a page that wants post channels (`posts`: the
 * post whose live comments it shows), fetches a subscriber token from the
 * site (GET /wp-json/rtet/v1/token?posts=ID, with the REST nonce for a
 * logged-in user; the site grants only the post channels the user may
 * read), subscribes to every channel the token grants, sends a fresh token
 * (`auth`) before the old one expires, and reuses a still-valid token when it reconnects. Reconnects wait a random
 * time up to an exponentially growing ceiling ("full jitter"), so the tabs a
 * relay restart disconnected at once come back spread out; each channel
 * resumes with `since` so nothing published during a disconnect is missed. When the relay cannot replay
 * (`recovered: false`) the page is told, and the client then replays what the
 * relay's new history holds.
 *
 * Settings come from `window.rtetSettings` (wp_add_inline_script); they are
 * checked and clamped. The API key is never here.
 *
 * Fired, as `wp.hooks` actions (when wp.hooks is loaded) and as DOM
 * CustomEvents on `document` (the detail is the first argument):
 *
 * - `rtet.event` / `rtet:event`             every event: {channel, seq, id, event, data, ts}
 * - `rtet.<event>` (hooks only)             per event name, e.g. `rtet.post_published`: (data, event)
 * - `rtet.connected` / `rtet:connected`     subscribed after (re)connecting: {channels}
 * - `rtet.disconnected` / `rtet:disconnected` the connection dropped: {code, reason, retryIn}
 * - `rtet.resync` / `rtet:resync`           events on {channel} may have been missed: refetch what you show
 * - `rtet.token` / `rtet:token`             a fresh token was sent on the open connection: {expires}
 * - `rtet.presence` / `rtet:presence`       the whole presence state of a channel:
 *                                           {channel, members: [{sub, info}] (members only), member_count, anonymous}
 * - `rtet.join` / `rtet:join`               members joined: {channel, members: [{sub, info}]}
 * - `rtet.leave` / `rtet:leave`             members left: {channel, subs}
 * - `rtet.presence_count` / `rtet:presence_count` the counts changed: {channel, member_count, anonymous}
 *
 * In the block editor (`editing`: the post open there) the token makes the
 * user a presence member of `post.<ID>.editors`; `window.rtet.members(channel)`
 * gives the member list the client keeps for a channel.
 *
 * Readers badge (front end, when on in the settings): on a public post's
 * page the token shows the counts of `post.<ID>` (`presence_counts`), and
 * "N people reading" is written into every element marked
 * `data-rtet-readers="<post ID>"`, or into a badge the client adds when the
 * theme has none. Counts only: nobody's identity reaches a reader's page.
 *
 * Built-in displays: a toast for `post_published` and for `comment_approved`
 * (front end, when toasts are on); for `comment_approved` the comment count
 * of that post is updated in every element marked
 * `data-rtet-comment-count="<post ID>"` and the comments title block
 * (`data-rtet-comments-title`); an admin notice for `user_registered` and
 * for `comment_held` (wp-admin). Themes and plugins that show comments
 * themselves listen to `rtet.comment_approved` ({id, post, author, excerpt,
 * link, date, count, count_title}) through wp.hooks.
 *
 * Public API: `window.rtet.start()`, `window.rtet.stop()`, `window.rtet.status()`.
 * The client stops on `pagehide` and starts again when a page comes back from the bfcache.
 *
 * @package real-time-event-trigger
 */
( function ( window, document ) {
	'use strict';

	var raw = window.rtetSettings || {};

	/** Channel names: 1-128 of [A-Za-z0-9_.:@-] (docs/protocol.md; checked against tests/protocol-vectors). */
	var CHANNEL_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/;

	/**
	 * A number from settings, clamped to [min, max], or the default.
	 *
	 * @param {*}      value Value from settings.
	 * @param {number} def   Default.
	 * @param {number} min   Lowest allowed.
	 * @param {number} max   Highest allowed.
	 * @return {number} The clamped number.
	 */
	function clamp( value, def, min, max ) {
		var n = Number( value );
		if ( ! isFinite( n ) ) {
			n = def;
		}
		return Math.min( max, Math.max( min, n ) );
	}

	/**
	 * Whether a value is a channel name of the protocol (docs/protocol.md).
	 *
	 * @param {*} name Value.
	 * @return {boolean} True for a channel name.
	 */
	function isChannel( name ) {
		return typeof name === 'string' && CHANNEL_PATTERN.test( name );
	}

	/** The most posts one page asks channels for (RTET_Channels::MAX_POSTS; tests/js checks the two agree). */
	var MAX_POSTS = 20;

	/**
	 * Whether a value is a post ID.
	 *
	 * @param {*} id Value.
	 * @return {boolean} True for a positive integer.
	 */
	function isPostId( id ) {
		return typeof id === 'number' && id > 0 && Math.floor( id ) === id;
	}

	var reconnectMin = clamp( raw.reconnect && raw.reconnect.min, 1000, 250, 60000 );
	var settings = {
		tokenUrl: typeof raw.tokenUrl === 'string' ? raw.tokenUrl : '',
		url: typeof raw.url === 'string' ? raw.url : '',
		anonymous: Array.isArray( raw.anonymous ) ? raw.anonymous.filter( isChannel ) : [],
		nonce: typeof raw.nonce === 'string' ? raw.nonce : '',
		context: raw.context === 'admin' ? 'admin' : 'front',
		toasts: !! raw.toasts,
		readersBadge: !! raw.readersBadge,
		adminNotices: !! raw.adminNotices,
		commentNotices: !! raw.commentNotices,
		posts: Array.isArray( raw.posts ) ? raw.posts.filter( isPostId ).slice( 0, MAX_POSTS ) : [],
		editing: isPostId( raw.editing ) ? raw.editing : 0,
		reconnectMin: reconnectMin,
		reconnectMax: clamp( raw.reconnect && raw.reconnect.max, 30000, reconnectMin, 300000 ),
		i18n: raw.i18n || {},
	};

	/** Shortest wait before refreshing a token, in ms. */
	var REFRESH_MIN = 1000;
	/** Refresh this long before the token expires (at most a fifth of its life), in ms. */
	var REFRESH_MARGIN = 60000;

	var ws = null;
	var token = null; // {url, token (null: anonymous), channels, expires, lifetime, expiresAt}
	var channels = {}; // name -> {epoch, seq, subscribed, resyncing}
	var presence = {}; // name -> {members: {sub: info} | null, member_count, anonymous}
	var attempt = 0;
	var running = false;
	var reconnectTimer = null;
	var refreshTimer = null;
	var connectedOnce = false;

	/**
	 * A translated string with %s / %1$s placeholders filled.
	 *
	 * @param {string} key  Key in settings.i18n.
	 * @param {...string} args Values.
	 * @return {string} The text.
	 */
	function t( key ) {
		var text = typeof settings.i18n[ key ] === 'string' ? settings.i18n[ key ] : key;
		return fill( text, Array.prototype.slice.call( arguments, 1 ) );
	}

	/**
	 * A text with its %s / %1$s placeholders filled.
	 *
	 * @param {string} text Text.
	 * @param {Array}  args Values.
	 * @return {string} The text, filled.
	 */
	function fill( text, args ) {
		var next = 0;
		return text.replace( /%(?:(\d+)\$)?s/g, function ( m, n ) {
			var v = n ? args[ Number( n ) - 1 ] : args[ next++ ];
			return v === undefined ? '' : String( v );
		} );
	}

	/**
	 * Fires a wp.hooks action (when present) and a DOM CustomEvent.
	 *
	 * @param {string} name   Name after the prefix, e.g. 'event'.
	 * @param {*}      detail The CustomEvent detail and first hook argument.
	 * @param {Array}  [args] Hook arguments, when they differ from [detail].
	 * @param {boolean} [hooksOnly] Do not dispatch a DOM event.
	 */
	function fire( name, detail, args, hooksOnly ) {
		var hooks = window.wp && window.wp.hooks;
		if ( hooks && typeof hooks.doAction === 'function' ) {
			try {
				hooks.doAction.apply( hooks, [ 'rtet.' + name ].concat( args || [ detail ] ) );
			} catch ( e ) {
				logError( e );
			}
		}
		if ( ! hooksOnly ) {
			document.dispatchEvent( new window.CustomEvent( 'rtet:' + name, { detail: detail } ) );
		}
	}

	/**
	 * Reports an error from a listener without stopping the client.
	 *
	 * @param {*} e The error.
	 */
	function logError( e ) {
		if ( window.console && window.console.error ) {
			window.console.error( '[rtet]', e );
		}
	}

	/**
	 * Whether this page connects as a visitor: no token, the anonymous channels.
	 *
	 * @return {boolean} True without a REST nonce.
	 */
	function anonymous() {
		return ! settings.nonce && settings.posts.length === 0 && !! settings.url && settings.anonymous.length > 0;
	}

	/**
	 * The token endpoint's URL, with the posts this page wants channels for
	 * and the post it has open in the block editor.
	 *
	 * @return {string} URL.
	 */
	function tokenUrl() {
		var query = [];
		if ( settings.posts.length > 0 ) {
			query.push( 'posts=' + settings.posts.join( ',' ) );
		}
		if ( settings.editing ) {
			query.push( 'editing=' + settings.editing );
		}
		if ( query.length === 0 ) {
			return settings.tokenUrl;
		}
		return settings.tokenUrl + ( settings.tokenUrl.indexOf( '?' ) === -1 ? '?' : '&' ) + query.join( '&' );
	}

	/**
	 * Members from a frame: [{sub, info}] with a string sub; others dropped.
	 *
	 * @param {*} list Frame value.
	 * @return {Array} Members.
	 */
	function memberList( list ) {
		return ( Array.isArray( list ) ? list : [] ).filter( function ( m ) {
			return m && typeof m.sub === 'string' && m.sub !== '';
		} ).map( function ( m ) {
			var info = m.info && typeof m.info === 'object' ? m.info : {};
			var out = {};
			if ( typeof info.name === 'string' ) {
				out.name = info.name;
			}
			if ( typeof info.avatar === 'string' && /^https?:\/\//i.test( info.avatar ) ) {
				out.avatar = info.avatar;
			}
			return { sub: m.sub, info: out };
		} );
	}

	/**
	 * The members the client holds for a channel.
	 *
	 * @param {string} name Channel.
	 * @return {Array} [{sub, info}] sorted by sub; empty when none are known.
	 */
	function members( name ) {
		var p = presence[ name ];
		if ( ! p || ! p.members ) {
			return [];
		}
		return Object.keys( p.members ).sort().map( function ( sub ) {
			return { sub: sub, info: p.members[ sub ] };
		} );
	}

	/**
	 * Handles a presence frame (`presence`, `join`, `leave`, `presence_count`)
	 * for a channel this client subscribes to.
	 *
	 * @param {Object} frame Frame.
	 */
	function handlePresence( frame ) {
		var name = frame.channel;
		var p = presence[ name ] || ( presence[ name ] = { members: null, member_count: 0, anonymous: 0 } );
		switch ( frame.type ) {
			case 'presence':
				p.member_count = Number( frame.member_count ) || 0;
				p.anonymous = Number( frame.anonymous ) || 0;
				p.members = null;
				if ( Array.isArray( frame.members ) ) {
					p.members = {};
					memberList( frame.members ).forEach( function ( m ) {
						p.members[ m.sub ] = m.info;
					} );
				}
				showReaders( name, p );
				var detail = { channel: name, member_count: p.member_count, anonymous: p.anonymous };
				if ( p.members ) {
					detail.members = members( name );
				}
				fire( 'presence', detail );
				return;
			case 'join':
				var joined = memberList( frame.members );
				if ( p.members ) {
					joined.forEach( function ( m ) {
						p.members[ m.sub ] = m.info;
					} );
				}
				fire( 'join', { channel: name, members: joined } );
				return;
			case 'leave':
				var subs = ( Array.isArray( frame.subs ) ? frame.subs : [] ).filter( function ( sub ) {
					return typeof sub === 'string';
				} );
				if ( p.members ) {
					subs.forEach( function ( sub ) {
						delete p.members[ sub ];
					} );
				}
				fire( 'leave', { channel: name, subs: subs } );
				return;
			case 'presence_count':
				p.member_count = Number( frame.member_count ) || 0;
				p.anonymous = Number( frame.anonymous ) || 0;
				showReaders( name, p );
				fire( 'presence_count', { channel: name, member_count: p.member_count, anonymous: p.anonymous } );
				return;
		}
	}

	/**
	 * What the next connection uses: the anonymous channels for a visitor, a
	 * still-valid token, or a fresh one from the site.
	 *
	 * @return {Promise<Object>} {url, token, channels, expires, lifetime, expiresAt}
	 */
	function credentials() {
		var visitor = { url: settings.url, token: null, channels: settings.anonymous.slice(), expires: 0, lifetime: 0, expiresAt: Infinity };
		if ( anonymous() ) {
			return Promise.resolve( visitor );
		}
		if ( token && token.token && token.expiresAt - Date.now() > REFRESH_MIN + Math.min( REFRESH_MARGIN, token.lifetime * 0.2 ) ) {
			return Promise.resolve( token );
		}
		if ( ! settings.nonce && settings.url && settings.anonymous.length > 0 ) {
			// A visitor's page that wants post channels: without a token it still gets the anonymous ones.
			return fetchToken().catch( function ( e ) {
				logError( e );
				return visitor;
			} );
		}
		return fetchToken();
	}

	/**
	 * Fetches a token from the site.
	 *
	 * @param {boolean} [withoutNonce] Ask as a visitor (after the nonce was refused).
	 * @return {Promise<Object>} {url, token, channels, expires, lifetime, expiresAt}
	 */
	function fetchToken( withoutNonce ) {
		var headers = { Accept: 'application/json' };
		if ( settings.nonce && ! withoutNonce ) {
			headers[ 'X-WP-Nonce' ] = settings.nonce;
		}
		return window
			.fetch( tokenUrl(), { credentials: 'same-origin', cache: 'no-store', headers: headers } )
			.then( function ( res ) {
				if ( res.status === 403 && settings.nonce && ! withoutNonce ) {
					// The nonce expired (a page open for a day): continue as a visitor.
					settings.nonce = '';
					return anonymous() ? credentials() : fetchToken( true );
				}
				if ( ! res.ok ) {
					throw new Error( 'token endpoint answered HTTP ' + res.status );
				}
				var serverNow = Date.parse( res.headers.get( 'Date' ) || '' );
				return res.json().then( function ( body ) {
					if ( ! body || typeof body.token !== 'string' || typeof body.url !== 'string' || ! Array.isArray( body.channels ) ) {
						throw new Error( 'unexpected token response' );
					}
					// The Date header has whole seconds: assume the latest time it can mean.
					var now = isFinite( serverNow ) ? serverNow + 1000 : Date.now();
					body.lifetime = Math.max( 0, Number( body.expires ) * 1000 - now );
					body.expiresAt = Date.now() + body.lifetime;
					return body;
				} );
			} );
	}

	/**
	 * Sends a frame when the socket is open.
	 *
	 * @param {Object} frame Frame.
	 */
	function send( frame ) {
		if ( ws && ws.readyState === 1 ) {
			ws.send( JSON.stringify( frame ) );
		}
	}

	/**
	 * Subscribes to a channel, resuming after the last event seen.
	 *
	 * @param {string} name Channel.
	 */
	function subscribe( name ) {
		var st = channels[ name ];
		var frame = { type: 'subscribe', channel: name };
		if ( st.epoch !== null ) {
			frame.since = { epoch: st.epoch, seq: st.seq };
		}
		st.subscribed = false;
		st.since = frame.since || null;
		send( frame );
	}

	/**
	 * Starts (or restarts) the connection: credentials, socket, auth, subscribe.
	 */
	function connect() {
		clearTimeout( reconnectTimer );
		reconnectTimer = null;
		credentials()
			.then( function ( tk ) {
				if ( ! running ) {
					return;
				}
				token = tk;
				open();
			} )
			.catch( function ( e ) {
				logError( e );
				scheduleReconnect( 0, 'token' );
			} );
	}

	/**
	 * Opens the WebSocket with the current token.
	 */
	function open() {
		var socket;
		try {
			socket = new window.WebSocket( token.url );
		} catch ( e ) {
			logError( e );
			scheduleReconnect( 0, 'url' );
			return;
		}
		ws = socket;
		token.channels.forEach( function ( name ) {
			if ( ! channels[ name ] ) {
				channels[ name ] = { epoch: null, seq: 0, subscribed: false, since: null, retried: false, resyncing: false };
			}
		} );
		socket.onopen = function () {
			if ( token.token ) {
				send( { type: 'auth', token: token.token } );
				scheduleRefresh();
			}
			token.channels.forEach( subscribe );
		};
		socket.onmessage = function ( msg ) {
			var frame;
			if ( ws !== socket ) {
				// A socket the page stopped (or replaced) may still be handed frames the relay
				// sent before it read the close: they would move `since` past what a new
				// connection is to replay. Browsers drop them; some WebSocket implementations do not.
				return;
			}
			try {
				frame = JSON.parse( msg.data );
			} catch ( e ) {
				return;
			}
			if ( frame && typeof frame.type === 'string' ) {
				handle( frame );
			}
		};
		socket.onclose = function ( ev ) {
			if ( ws !== socket ) {
				return;
			}
			ws = null;
			clearTimeout( refreshTimer );
			resetChannels();
			if ( ev.code === 4401 && token ) {
				// The relay refused the token: the next connection asks for a fresh one.
				token.expiresAt = 0;
			}
			if ( running ) {
				scheduleReconnect( ev.code, ev.reason );
			}
		};
	}

	/**
	 * Forgets per-connection state; keeps each channel's epoch and seq for `since`.
	 */
	function resetChannels() {
		Object.keys( channels ).forEach( function ( name ) {
			channels[ name ].subscribed = false;
			channels[ name ].resyncing = false;
			channels[ name ].retried = false;
			channels[ name ].since = null;
		} );
		// The relay sends each channel's whole presence again after subscribing.
		presence = {};
	}

	/**
	 * Handles one frame from the relay.
	 *
	 * @param {Object} frame Frame.
	 */
	function handle( frame ) {
		var st = typeof frame.channel === 'string' ? channels[ frame.channel ] : null;
		switch ( frame.type ) {
			case 'subscribed':
				if ( ! st ) {
					return;
				}
				var sent = st.since;
				st.since = null;
				if ( sent && frame.recovered === false ) {
					if ( ! st.retried ) {
						// History could not be replayed: tell the page.
						fire( 'resync', { channel: frame.channel } );
					}
					if ( ! st.retried && frame.epoch !== sent.epoch ) {
						// A new life of the channel's history (relay restart): replay all of it.
						st.retried = true;
						st.epoch = frame.epoch;
						st.seq = 0;
						st.resyncing = true;
						send( { type: 'unsubscribe', channel: frame.channel } );
						subscribe( frame.channel );
						return;
					}
					st.seq = Number( frame.seq ) || 0;
				} else if ( ! sent ) {
					// A first subscription: live events from here on.
					st.seq = Number( frame.seq ) || 0;
				}
				st.retried = false;
				st.epoch = frame.epoch;
				st.subscribed = true;
				if ( token && token.channels.every( function ( n ) {
					return ! channels[ n ] || channels[ n ].subscribed;
				} ) ) {
					attempt = 0;
					connectedOnce = true;
					fire( 'connected', { channels: token.channels.slice() } );
				}
				return;
			case 'unsubscribed':
				if ( st ) {
					// Everything after this belongs to the new subscription.
					st.resyncing = false;
				}
				return;
			case 'event':
				if ( ! st || st.resyncing ) {
					return;
				}
				var seq = Number( frame.seq );
				if ( isFinite( seq ) && seq <= st.seq ) {
					return; // already seen
				}
				if ( isFinite( seq ) ) {
					st.seq = seq;
				}
				deliver( frame );
				return;
			case 'presence':
			case 'join':
			case 'leave':
			case 'presence_count':
				if ( st ) {
					handlePresence( frame );
				}
				return;
			case 'error':
				if ( frame.code === 'forbidden' && st ) {
					delete channels[ frame.channel ];
				}
				if ( frame.code === 'unauthorized' && ws ) {
					if ( token ) {
						token.expiresAt = 0;
					}
					ws.close( 4000, 'reauth' );
				}
				logError( 'relay: ' + frame.code + ' ' + ( frame.message || '' ) );
				return;
		}
	}

	/**
	 * Hands an event to listeners and the built-in displays.
	 *
	 * @param {Object} frame The event frame.
	 */
	function deliver( frame ) {
		var evt = {
			channel: frame.channel,
			seq: frame.seq,
			id: frame.id,
			event: String( frame.event ),
			data: frame.data,
			ts: frame.ts,
		};
		fire( 'event', evt );
		fire( evt.event.replace( /[^a-zA-Z0-9_.-]/g, '_' ), evt, [ evt.data, evt ], true );
		try {
			if ( evt.event === 'post_published' && settings.context === 'front' && settings.toasts ) {
				showToast( t( 'newPost', String( ( evt.data && evt.data.title ) || '' ) ), evt.data && evt.data.link, t( 'readPost' ) );
			}
			if ( evt.event === 'user_registered' && settings.context === 'admin' && settings.adminNotices ) {
				var user = evt.data || {};
				showNotice( t( 'newUser', String( user.login || '' ), String( user.email || '' ) ), user.edit_link, t( 'viewUser' ) );
			}
			if ( evt.event === 'comment_approved' && /^post\.[0-9]+$/.test( evt.channel ) ) {
				showCommentCount( evt.data || {} );
				if ( settings.context === 'front' && settings.toasts ) {
					showToast( t( 'newComment', String( ( evt.data && evt.data.author ) || '' ) ), evt.data && evt.data.link, t( 'readComment' ) );
				}
			}
			if ( evt.event === 'comment_held' && settings.context === 'admin' && settings.commentNotices ) {
				var held = evt.data || {};
				showNotice( t( 'heldComment', String( held.author || '' ), String( held.post_title || '' ) ), held.moderate_link, t( 'moderate' ) );
			}
		} catch ( e ) {
			logError( e );
		}
	}

	/**
	 * Plans the next connection attempt: a random wait up to a ceiling that
	 * doubles with each failed attempt ("full jitter"), so clients dropped
	 * together do not come back together.
	 *
	 * @param {number} code   Close code.
	 * @param {string} reason Close reason.
	 */
	function scheduleReconnect( code, reason ) {
		if ( ! running || reconnectTimer ) {
			return;
		}
		var ceiling = Math.min( settings.reconnectMax, settings.reconnectMin * Math.pow( 2, attempt ) );
		var delay = code === 4401 && attempt === 0 ? 0 : Math.round( Math.random() * ceiling );
		attempt = Math.min( attempt + 1, 30 );
		if ( connectedOnce ) {
			fire( 'disconnected', { code: code, reason: reason || '', retryIn: delay } );
		}
		reconnectTimer = setTimeout( connect, delay );
	}

	/**
	 * Plans the token refresh before the current token expires.
	 */
	function scheduleRefresh() {
		clearTimeout( refreshTimer );
		var wait = Math.max( REFRESH_MIN, token.expiresAt - Date.now() - Math.min( REFRESH_MARGIN, token.lifetime * 0.2 ) );
		refreshTimer = setTimeout( refresh, wait );
	}

	/**
	 * Fetches a fresh token and sends it on the open connection.
	 */
	function refresh() {
		fetchToken()
			.then( function ( tk ) {
				if ( ! running || ! ws || ! tk.token ) {
					return;
				}
				var fresh = tk.channels.filter( function ( n ) {
					return ! channels[ n ];
				} );
				token = tk;
				send( { type: 'auth', token: tk.token } );
				fire( 'token', { expires: tk.expires } );
				fresh.forEach( function ( name ) {
					channels[ name ] = { epoch: null, seq: 0, subscribed: false, since: null, retried: false, resyncing: false };
					subscribe( name );
				} );
				scheduleRefresh();
			} )
			.catch( function ( e ) {
				logError( e );
				clearTimeout( refreshTimer );
				refreshTimer = setTimeout( refresh, 5000 );
			} );
	}

	/**
	 * The region that holds toasts (created once, so screen readers announce additions).
	 *
	 * @param {string} id        Element id.
	 * @param {string} className Class.
	 * @param {Element} parent   Where to put it.
	 * @return {Element} The region.
	 */
	function liveRegion( id, className, parent ) {
		var region = document.getElementById( id );
		if ( ! region ) {
			region = document.createElement( 'div' );
			region.id = id;
			region.className = className;
			region.setAttribute( 'aria-live', 'polite' );
			region.setAttribute( 'aria-relevant', 'additions' );
			region.setAttribute( 'role', 'region' );
			region.setAttribute( 'aria-label', t( 'notifications' ) );
			if ( parent === document.body ) {
				parent.appendChild( region );
			} else {
				parent.insertBefore( region, parent.firstChild );
			}
		}
		return region;
	}

	/**
	 * Shows "N people reading" for a post this page asked for, when the
	 * readers badge is on: everyone subscribed to `post.<ID>`, counted.
	 *
	 * @param {string} name Channel.
	 * @param {Object} p    {member_count, anonymous}
	 */
	function showReaders( name, p ) {
		var m = /^post\.([1-9][0-9]*)$/.exec( name );
		if ( ! settings.readersBadge || ! m || settings.posts.indexOf( Number( m[ 1 ] ) ) === -1 ) {
			return;
		}
		var text = readersText( p.member_count + p.anonymous );
		var marked = document.querySelectorAll( '[data-rtet-readers="' + m[ 1 ] + '"]' );
		if ( marked.length === 0 ) {
			var badge = document.createElement( 'div' );
			badge.className = 'rtet-readers';
			badge.setAttribute( 'data-rtet-readers', m[ 1 ] );
			badge.setAttribute( 'role', 'status' );
			document.body.appendChild( badge );
			marked = [ badge ];
		}
		Array.prototype.forEach.call( marked, function ( el ) {
			el.textContent = text;
		} );
	}

	/**
	 * "N people reading" in the site's language: `settings.i18n.readers`
	 * holds the texts `_n()` gives and, for each count under 200, which of
	 * them it takes; a larger count takes the text of 100 + count % 100
	 * (RTET_Client::readers_text() says why).
	 *
	 * @param {number} n How many are reading.
	 * @return {string} The text.
	 */
	function readersText( n ) {
		var readers = settings.i18n.readers || {};
		var forms = Array.isArray( readers.forms ) ? readers.forms : [];
		var pick = Array.isArray( readers.pick ) ? readers.pick : [];
		var form = forms[ pick[ n < pick.length ? n : 100 + ( n % 100 ) ] ];
		return fill( typeof form === 'string' ? form : '%s', [ String( n ) ] );
	}

	/**
	 * A link element for an http(s) URL, or null.
	 *
	 * @param {*}      href URL.
	 * @param {string} text Link text.
	 * @return {Element|null} The link.
	 */
	function safeLink( href, text ) {
		if ( typeof href !== 'string' || ! /^https?:\/\//i.test( href ) ) {
			return null;
		}
		var a = document.createElement( 'a' );
		a.href = href;
		a.textContent = text;
		return a;
	}

	/**
	 * Updates the comment count of a post wherever the page shows it: elements
	 * marked `data-rtet-comment-count="<post ID>"` get the number, the
	 * comments title block (`data-rtet-comments-title="<post ID>"`) its text.
	 *
	 * @param {Object} comment {post, count, count_title}
	 */
	function showCommentCount( comment ) {
		var post = Number( comment.post );
		var count = Number( comment.count );
		if ( ! isPostId( post ) || ! isFinite( count ) || count < 0 ) {
			return;
		}
		Array.prototype.forEach.call( document.querySelectorAll( '[data-rtet-comment-count="' + post + '"]' ), function ( el ) {
			el.textContent = String( count );
		} );
		if ( typeof comment.count_title === 'string' && comment.count_title ) {
			Array.prototype.forEach.call( document.querySelectorAll( '[data-rtet-comments-title="' + post + '"]' ), function ( el ) {
				el.textContent = comment.count_title;
			} );
		}
	}

	/**
	 * Shows a text-only, dismissable toast.
	 *
	 * @param {string} message  Text.
	 * @param {*}      href     Link URL (http or https only), or nothing.
	 * @param {string} linkText Link text.
	 */
	function showToast( message, href, linkText ) {
		var region = liveRegion( 'rtet-toasts', 'rtet-toasts', document.body );
		var toast = document.createElement( 'div' );
		toast.className = 'rtet-toast';
		var text = document.createElement( 'p' );
		text.className = 'rtet-toast__text';
		text.textContent = message;
		toast.appendChild( text );
		var link = safeLink( href, linkText );
		if ( link ) {
			link.className = 'rtet-toast__link';
			toast.appendChild( link );
		}
		var close = document.createElement( 'button' );
		close.type = 'button';
		close.className = 'rtet-toast__dismiss';
		close.textContent = t( 'dismiss' );
		close.addEventListener( 'click', function () {
			toast.remove();
		} );
		toast.appendChild( close );
		region.appendChild( toast );
		while ( region.children.length > 5 ) {
			region.removeChild( region.firstChild );
		}
	}

	/**
	 * Shows a dismissable, text-only admin notice.
	 *
	 * @param {string} message  Text.
	 * @param {*}      href     Link URL (http or https only), or nothing.
	 * @param {string} linkText Link text.
	 */
	function showNotice( message, href, linkText ) {
		var parent = document.querySelector( '#wpbody-content' ) || document.body;
		var region = liveRegion( 'rtet-admin-notices', 'rtet-admin-notices', parent );
		var notice = document.createElement( 'div' );
		notice.className = 'notice notice-info rtet-notice';
		var p = document.createElement( 'p' );
		p.textContent = message + ' ';
		var link = safeLink( href, linkText );
		if ( link ) {
			p.appendChild( link );
		}
		notice.appendChild( p );
		var close = document.createElement( 'button' );
		close.type = 'button';
		close.className = 'notice-dismiss';
		var label = document.createElement( 'span' );
		label.className = 'screen-reader-text';
		label.textContent = t( 'dismissNotice' );
		close.appendChild( label );
		close.addEventListener( 'click', function () {
			notice.remove();
		} );
		notice.appendChild( close );
		region.appendChild( notice );
	}

	/**
	 * Starts the client (idempotent).
	 */
	function start() {
		if ( running || ! ( settings.tokenUrl || anonymous() ) || ! window.WebSocket || ! window.fetch ) {
			return;
		}
		running = true;
		attempt = 0;
		connect();
	}

	/**
	 * Stops the client: closes the socket and clears every timer.
	 */
	function stop() {
		running = false;
		clearTimeout( reconnectTimer );
		clearTimeout( refreshTimer );
		reconnectTimer = null;
		refreshTimer = null;
		if ( ws ) {
			var socket = ws;
			ws = null;
			socket.close( 1000, 'pagehide' );
		}
		resetChannels();
	}

	/**
	 * What the client is doing, for debugging.
	 *
	 * @return {Object} {running, connected, channels}
	 */
	function status() {
		var out = {};
		Object.keys( channels ).forEach( function ( n ) {
			out[ n ] = { epoch: channels[ n ].epoch, seq: channels[ n ].seq, subscribed: channels[ n ].subscribed };
		} );
		return { running: running, connected: !! ( ws && ws.readyState === 1 ), channels: out };
	}

	window.rtet = { start: start, stop: stop, status: status, members: members };

	window.addEventListener( 'pagehide', stop );
	window.addEventListener( 'pageshow', function ( e ) {
		if ( e.persisted ) {
			start();
		}
	} );

	if ( document.readyState === 'loading' ) {
		document.addEventListener( 'DOMContentLoaded', start );
	} else {
		start();
	}
}( window, document ) );
