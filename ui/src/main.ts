import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { AppState } from './lib/app.svelte';
import { createBackend } from './lib/backend';

const backend = await createBackend();
const app = new AppState(backend);
mount(App, { target: document.getElementById('app')!, props: { app } });
void app.start();
// For tests and debugging in a browser console.
(globalThis as { airtext?: AppState }).airtext = app;
