import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, getApiKey, setApiKey } from './api';
import { href, link, useRoute } from './router';
import { RunView } from './views/RunView';
import { RunsView } from './views/RunsView';
import { SessionDetail, SessionsView } from './views/SessionsView';
import './style.css';

interface Health {
  status?: string;
  version?: string;
}

function KeyBar({ onChange }: { onChange: () => void }) {
  const [value, setValue] = useState(getApiKey());
  const [saved, setSaved] = useState(getApiKey());
  const save = (e: Event) => {
    e.preventDefault();
    setApiKey(value.trim());
    setSaved(value.trim());
    onChange();
  };
  return (
    <form class="keybar" onSubmit={save} aria-label="API key settings">
      <label for="api-key">API key</label>
      <input
        id="api-key"
        type="password"
        autocomplete="off"
        placeholder="none (auth off)"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
      />
      <button type="submit">{value.trim() === saved ? 'Saved' : 'Save key'}</button>
    </form>
  );
}

function App() {
  const route = useRoute();
  // Bumped when the API key changes, so views load again with it.
  const [keyVersion, setKeyVersion] = useState(0);
  const [health, setHealth] = useState<Health | undefined>();
  useEffect(() => {
    api.get<Health>('/health').then(setHealth, () => setHealth(undefined));
  }, [keyVersion]);
  const tab = (name: string, to: string, active: boolean) => (
    <a class={active ? 'tab active' : 'tab'} aria-current={active ? 'page' : undefined} {...link(to)}>
      {name}
    </a>
  );
  return (
    <div class="app">
      <header class="top">
        <div class="brand">
          <img src={`${import.meta.env.BASE_URL}favicon.svg`} alt="" width={22} height={22} />
          <span>Orchestra</span>
          {health?.version && (
            <span class="muted small" title={`server status: ${health.status ?? 'unknown'}`}>
              v{health.version} · {health.status}
            </span>
          )}
        </div>
        <nav class="tabs">
          {tab('Run', href('run'), route.view === 'run')}
          {tab('Sessions', href('sessions'), route.view === 'sessions' || route.view === 'session')}
          {tab('Runs', href('runs'), route.view === 'runs')}
        </nav>
        <KeyBar onChange={() => setKeyVersion((v) => v + 1)} />
      </header>
      <main>
        {/* Kept mounted so a run goes on streaming while other views are open. */}
        <div hidden={route.view !== 'run'}>
          <RunView keyVersion={keyVersion} />
        </div>
        {route.view === 'sessions' && <SessionsView keyVersion={keyVersion} />}
        {route.view === 'session' && <SessionDetail id={route.id} keyVersion={keyVersion} />}
        {route.view === 'runs' && <RunsView id={route.id} keyVersion={keyVersion} />}
      </main>
    </div>
  );
}

const root = document.getElementById('app');
if (root) render(<App />, root);
