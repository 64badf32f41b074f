/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

// In development the web build talks to a gateway through this server (same origin, so the
// gateway needs no CORS): AIRTEXT_GATEWAY=http://127.0.0.1:8080 by default.
const gateway = process.env.AIRTEXT_GATEWAY ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [svelte()],
  // Tauri serves the built files from its own protocol; relative paths work there and on the web.
  base: './',
  clearScreen: false,
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      '/v1': { target: gateway, ws: true, changeOrigin: true },
      '/healthz': { target: gateway, changeOrigin: true },
    },
  },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true, sourcemap: false },
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    environment: 'jsdom',
    include: ['tests/unit/**/*.test.ts'],
  },
});
