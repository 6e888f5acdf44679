import type { TestProject } from 'vitest/node';
import { findOrStartPostgres } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** An admin URL of a PostgreSQL server the tests may create databases on. */
    pgAdminUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const pg = await findOrStartPostgres();
  project.provide('pgAdminUrl', pg.adminUrl);
  process.stdout.write(`[kiln tests] PostgreSQL: ${pg.description}\n`);
  return pg.stop;
}
