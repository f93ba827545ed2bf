// The plugin flows with rtet.so loaded into php-fpm (skipped when the extension is not built).
import { describe, it } from 'node:test';
import { defineFlows } from './lib/flows.mjs';
import { extensionBuilt, EXTENSION_SO } from './lib/harness.mjs';

if (extensionBuilt) {
  defineFlows({ extension: true });
} else {
  describe('plugin flows (with the extension)', () => {
    it(`needs ${EXTENSION_SO}`, { skip: 'rtet.so is not built' }, () => {});
  });
}
