#!/usr/bin/env node
// The compiled CLI lives in dist/; `scripts/setup.sh` builds it. (The packed CLI has its own bin: scripts/pack.mjs.)
import { main } from '../dist/index.js';

await main(process.argv);
