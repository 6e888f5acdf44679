#!/usr/bin/env node
// The compiled CLI lives in dist/; `scripts/setup.sh` builds it.
import { main } from '../dist/index.js';

main(process.argv).catch((err) => {
  process.stderr.write(`kiln: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
