<?php
/**
 * The readers badge's text ("1 person reading", "2 people reading") in the
 * plural forms of the site's language, as the browser client is given it:
 * RTET_Client::readers_text()'s texts and, per count, which one it takes.
 *
 * @package real-time-event-trigger
 */

/**
 * Readers badge plurals.
 */
class ReadersBadgeTest extends RTET_Test_Case {

	/** The plugin's text domain. */
	const DOMAIN = 'real-time-event-trigger';

	/**
	 * A translation file loaded for this test, to unload after it.
	 *
	 * @var string|null
	 */
	private $mo_file = null;

	protected function tearDown(): void {
		if ( null !== $this->mo_file ) {
			unload_textdomain( self::DOMAIN );
			unlink( $this->mo_file );
			$this->mo_file = null;
		}
		parent::tearDown();
	}

	/**
	 * The badge's text for `$n` readers, looked up as rtet-client.js's
	 * readersText() does: a count of 200 or more takes the text of 100 + n % 100.
	 *
	 * @param array $readers What readers_text() gives.
	 * @param int   $n       Readers.
	 * @return string
	 */
	private static function badge( array $readers, $n ) {
		$i = $n < count( $readers['pick'] ) ? $n : 100 + $n % 100;
		return sprintf( $readers['forms'][ $readers['pick'][ $i ] ], number_format( $n, 0, '', '' ) );
	}

	/**
	 * Loads a translation of the badge's text into the plugin's domain, from a
	 * real .mo file, as load_plugin_textdomain() would.
	 *
	 * @param string   $plural_forms The language's Plural-Forms header.
	 * @param string[] $translations One text per plural form.
	 */
	private function translate( $plural_forms, array $translations ) {
		$mo = new MO();
		$mo->set_header( 'Plural-Forms', $plural_forms );
		$mo->add_entry(
			new Translation_Entry(
				array(
					'singular'     => '%s person reading',
					'plural'       => '%s people reading',
					'translations' => $translations,
				)
			)
		);
		$this->mo_file = wp_tempnam( 'rtet-readers' ) . '.mo';
		$this->assertTrue( $mo->export_to_file( $this->mo_file ) );
		unload_textdomain( self::DOMAIN );
		$this->assertTrue( load_textdomain( self::DOMAIN, $this->mo_file ) );
	}

	public function test_one_reader_and_two_readers_read_correctly_in_english() {
		$readers = RTET_Client::readers_text();
		$this->assertSame( '1 person reading', self::badge( $readers, 1 ) );
		$this->assertSame( '2 people reading', self::badge( $readers, 2 ) );
		$this->assertSame( '0 people reading', self::badge( $readers, 0 ) );
		$this->assertSame( '201 people reading', self::badge( $readers, 201 ) );
		$this->assertSame( array( '%s people reading', '%s person reading' ), $readers['forms'], 'two texts, each once' );
	}

	public function test_a_language_with_three_plural_forms_gets_each_count_right() {
		$this->translate(
			'nplurals=3; plural=(n==1 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2);',
			array( '%s osoba czyta', '%s osoby czytają', '%s osób czyta' )
		);
		$readers = RTET_Client::readers_text();
		$this->assertSame( '1 osoba czyta', self::badge( $readers, 1 ) );
		$this->assertSame( '2 osoby czytają', self::badge( $readers, 2 ) );
		$this->assertSame( '5 osób czyta', self::badge( $readers, 5 ) );
		$this->assertSame( '12 osób czyta', self::badge( $readers, 12 ) );
		$this->assertSame( '22 osoby czytają', self::badge( $readers, 22 ) );
		$this->assertSame( '1012 osób czyta', self::badge( $readers, 1012 ) );
		$this->assertSame( '1022 osoby czytają', self::badge( $readers, 1022 ) );
	}

	/**
	 * The client's lookup past its table (100 + n % 100) agrees with _n()
	 * for every count up to 10,000, in a language whose rule looks at the
	 * last two digits (Arabic: six forms).
	 */
	public function test_counts_past_the_table_take_the_form_gettext_gives_them() {
		$this->translate(
			'nplurals=6; plural=(n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : n%100>=3 && n%100<=10 ? 3 : n%100>=11 ? 4 : 5);',
			array( 'zero %s', 'one %s', 'two %s', 'few %s', 'many %s', 'other %s' )
		);
		$readers = RTET_Client::readers_text();
		$this->assertCount( 6, $readers['forms'] );
		for ( $n = 0; $n <= 10000; $n++ ) {
			// phpcs:ignore WordPress.WP.I18n.MissingTranslatorsComment -- the text under test.
			$gettext = sprintf( _n( '%s person reading', '%s people reading', $n, self::DOMAIN ), $n );
			if ( self::badge( $readers, $n ) !== $gettext ) {
				$this->fail( "$n readers: the client would show " . self::badge( $readers, $n ) . ", gettext says $gettext" );
			}
		}
	}

	public function test_a_page_is_given_the_texts_only_while_the_badge_is_on() {
		$given = function () {
			wp_deregister_script( RTET_Client::HANDLE );
			RTET_Client::enqueue_front();
			$inline = trim( implode( "\n", array_filter( (array) wp_scripts()->get_data( RTET_Client::HANDLE, 'before' ) ) ) );
			$this->assertMatchesRegularExpression( '/^window\.rtetSettings = (.*);$/s', $inline );
			preg_match( '/^window\.rtetSettings = (.*);$/s', $inline, $m );
			return json_decode( $m[1], true )['i18n']['readers'];
		};
		$this->set_settings( array( 'readers_badge' => false ) );
		$this->assertNull( $given() );
		$this->set_settings( array( 'readers_badge' => true ) );
		$readers = $given();
		$this->assertSame( '1 person reading', self::badge( $readers, 1 ) );
		$this->assertSame( '2 people reading', self::badge( $readers, 2 ) );
	}
}
