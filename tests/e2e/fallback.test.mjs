// The same plugin flows with the extension not loaded (HTTP fallback).
import { defineFlows } from './lib/flows.mjs';

defineFlows({ extension: false });
