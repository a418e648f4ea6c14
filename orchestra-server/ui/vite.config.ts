// Builds the console into dist/, which orchestra-server embeds at compile
// time and serves under /ui. Regenerate with scripts/build-ui.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // One small bundle: no inlined data: URLs (the page's CSP forbids them).
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 200,
  },
  server: {
    // `npm run dev` against a server on 127.0.0.1:8001.
    proxy: Object.fromEntries(
      ['/orchestrate', '/sessions', '/patterns', '/agents', '/runs', '/health'].map((p) => [
        p,
        'http://127.0.0.1:8001',
      ]),
    ),
  },
});
