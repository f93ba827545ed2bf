// Test 6: the flows pass with the extension not loaded (HTTP fallback).
import { defineFlows } from './lib/flows.mjs';

defineFlows({ extension: false });
