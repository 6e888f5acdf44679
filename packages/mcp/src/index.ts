export { createKilnMcpServer, KILN_MCP_TOOLS, type KilnMcpOptions } from './server.js';
export { INLINE_TEXT_MAX_CHARS } from './results.js';
