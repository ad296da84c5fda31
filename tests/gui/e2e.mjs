// The GUI end to end, run by tests/tests/gui.rs with two daemons started
// (FS_A_* and FS_B_* describe them). Everything a user does here goes
// through the GUI in Debian's headless Chromium; the disk is read with
// node's fs to check what really landed. Waits poll a condition with a
// deadline; a failure prints the step, the error and both pages' text.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set (run by tests/tests/gui.rs)`);
  return v;
};
const A = { url: env('FS_A_URL'), id: env('FS_A_ID'), listen: env('FS_A_LISTEN'), data: env('FS_A_DATA'), name: 'A' };
const B = { url: env('FS_B_URL'), id: env('FS_B_ID'), listen: env('FS_B_LISTEN'), data: env('FS_B_DATA'), name: 'B' };
const SHOTS = env('FS_SHOTS');
const LIMIT = 60_000;
const FOLDER = 'photos';

const logs = [];
let current = 'starting';

function read(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

// Polls `fn` (sync or async) until it returns a truthy value.
async function until(what, fn, ms = LIMIT) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function step(name, fn) {
  current = name;
  const t = Date.now();
  await fn();
  console.log(`ok  ${name} (${Date.now() - t} ms)`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

// The page's own session reads the API, for what the page shows only in
// prose (which side holds a conflict copy).
const rest = (page, p) => page.evaluate(async (u) => (await fetch(u)).json(), p);

const card = (page) => page.locator(`[data-testid=folder-card][data-folder=${FOLDER}]`);
const device = (page, id) => page.locator(`[data-testid=device-card][data-device="${id}"]`);
const action = (page, a) => card(page).locator(`button[data-action=${a}]`);
const text = async (loc) => (await loc.count()) ? (await loc.first().innerText()).trim() : '';

async function openPage(browser, side, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  page.on('console', (m) => logs.push(`${side.name} console ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`${side.name} page error: ${e.message}`));
  // Removing things asks for confirmation; this run confirms.
  page.on('dialog', (d) => d.accept());
  await page.goto(side.url);
  await page.locator('#device-name').filter({ hasText: '·' }).waitFor({ timeout: LIMIT });
  return { context, page };
}

async function closeView(page) {
  await page.locator('#dlg-view [data-close]').click();
  await page.locator('#dlg-view').waitFor({ state: 'hidden' });
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const pages = [];
  try {
    const a = (await openPage(browser, A)).page;
    const b = (await openPage(browser, B)).page;
    pages.push([A, a], [B, b]);

    await step('this device: ID, QR code and listen addresses', async () => {
      await b.click('#show-id');
      await until('B\'s ID in the dialog', async () => (await b.locator('#my-id').innerText()) === B.id);
      await until('the QR code drawn', () => b.locator('#qr').evaluate((i) => i.complete && i.naturalWidth > 0));
      await until('the listen address shown', async () => (await b.locator('#my-listen').innerText()).includes(B.listen));
      await shot(b, '00-this-device');
      await b.keyboard.press('Escape');
      await b.locator('#dlg-id').waitFor({ state: 'hidden' });
    });

    await step('the keyboard reaches and opens Add device', async () => {
      await b.locator('body').focus();
      for (let i = 0; i < 10; i++) {
        await b.keyboard.press('Tab');
        if (await b.evaluate(() => document.activeElement?.id === 'add-device')) break;
      }
      await b.keyboard.press('Enter');
      await b.locator('#dlg-device').waitFor();
      await until('focus inside the dialog', () => b.evaluate(() => document.activeElement?.id === 'device-id'));
      await b.keyboard.press('Escape');
      await b.locator('#dlg-device').waitFor({ state: 'hidden' });
    });

    await step('B adds A by its ID and address', async () => {
      await b.click('#add-device');
      await b.fill('#device-id', A.id);
      await b.fill('#device-name-in', 'alpha');
      await b.fill('#device-addresses', A.listen);
      await b.click('#dlg-device [type=submit]');
      await b.locator('#dlg-device').waitFor({ state: 'hidden' });
      await device(b, A.id).waitFor();
    });

    await step('A accepts the pending-device prompt; both connect', async () => {
      const prompt = a.locator(`[data-testid=pending-device][data-device="${B.id}"]`);
      await prompt.waitFor({ timeout: LIMIT });
      await shot(a, '01-pending-device');
      await prompt.getByRole('button', { name: 'Add device' }).click();
      await prompt.waitFor({ state: 'detached' });
      for (const [p, other] of [[a, B], [b, A]]) {
        await until('Connected on both cards', async () => (await text(device(p, other.id).getByTestId('device-state'))) === 'Connected');
      }
    });

    await step('A adds a folder shared with B; B accepts the offer', async () => {
      await a.click('#add-folder');
      await a.fill('#folder-id', FOLDER);
      await a.fill('#folder-path', path.join(A.data, FOLDER));
      await a.fill('#folder-versioning', 'none');
      await a.check(`#folder-share input[value="${B.id}"]`);
      await a.click('#dlg-folder [type=submit]');
      await a.locator('#dlg-folder').waitFor({ state: 'hidden' });
      await card(a).waitFor();

      const offer = b.locator(`[data-testid=pending-folder][data-folder=${FOLDER}]`);
      await offer.waitFor({ timeout: LIMIT });
      await shot(b, '02-pending-folder');
      await offer.getByRole('button', { name: 'Accept…' }).click();
      await b.fill('#accept-folder-path', path.join(B.data, FOLDER));
      await b.click('#dlg-accept-folder [type=submit]');
      await b.locator('#dlg-accept-folder').waitFor({ state: 'hidden' });
      await card(b).waitFor();
    });

    await step('B keeps versions (edit: simple:5)', async () => {
      await action(b, 'edit').click();
      await b.fill('#edit-versioning', 'simple:5');
      await b.click('#dlg-edit [type=submit]');
      await b.locator('#dlg-edit').waitFor({ state: 'hidden' });
      await until('the card shows simple versioning', async () => (await text(card(b).getByTestId('folder-versioning'))).startsWith('simple'));
    });

    const fa = (n) => path.join(A.data, FOLDER, n);
    const fb = (n) => path.join(B.data, FOLDER, n);
    // 4 MiB: enough blocks that the pull is a transfer, not one message.
    const hello = 'hello from A\n'.repeat(4 * 1024 * 1024 / 13);

    await step('a file written on A appears on B; progress reaches 100 %', async () => {
      fs.writeFileSync(fa('hello.txt'), hello);
      await action(a, 'rescan').click();
      await until('hello.txt whole on B', () => read(fb('hello.txt')) === hello);
      await until('B at 100 %', async () => (await text(card(b).getByTestId('folder-percent'))) === '100 %');
      await until('B up to date', async () => (await text(card(b).getByTestId('folder-state'))) === 'Up to date');
      await until('the change listed on B', async () => (await b.locator('[data-testid=change]').allInnerTexts()).some((t) => t.includes(`${FOLDER}/hello.txt`)));
      await until('A sees B complete', async () => (await text(device(a, B.id).getByTestId('device-completion'))) === '100 %');
      await shot(b, '03-synced');
    });

    await step('the out-of-sync view and the doctor say B is in sync', async () => {
      await action(b, 'need').click();
      await b.getByText('Nothing: this folder has everything.').waitFor();
      await closeView(b);
      await action(b, 'doctor').click();
      await b.getByTestId('doctor-ok').waitFor();
      await shot(b, '04-doctor');
      await closeView(b);
    });

    await step('keyboard focus survives live updates; Enter rescans', async () => {
      await action(b, 'rescan').focus();
      fs.writeFileSync(fa('keys.txt'), 'typed\n');
      await action(a, 'rescan').click();
      // The card is redrawn with the new count: focus must be on the same
      // button of the new drawing.
      await until('B\'s card redrawn with keys.txt', async () => (await card(b).innerText()).includes('2 files'));
      const focused = await b.evaluate(() => {
        const e = document.activeElement;
        return `${e?.closest('[data-folder]')?.dataset.folder}/${e?.dataset.action}`;
      });
      if (focused !== `${FOLDER}/rescan`) throw new Error(`focus moved to ${focused}`);
      const before = await b.locator('.notice').count();
      await b.keyboard.press('Enter');
      await until('the rescan acknowledged', async () => (await b.locator('.notice', { hasText: 'Rescan started' }).count()) > 0 || (await b.locator('.notice').count()) > before);
    });

    let holder;
    let holderSide;
    let conflict;
    await step('concurrent edits make a conflict', async () => {
      await action(b, 'pause').click();
      await until('B paused', async () => (await text(card(b).getByTestId('folder-state'))).startsWith('Paused'));
      fs.writeFileSync(fa('hello.txt'), 'A edited this\n');
      await action(a, 'rescan').click();
      await until('B told of A\'s edit', async () => {
        const s = await rest(b, '/rest/status');
        return s.folders.find((f) => f.id === FOLDER).need_files === 1;
      });
      fs.writeFileSync(fb('hello.txt'), 'B edited this, later and longer\n');
      await action(b, 'resume').click();
      await until('B running', async () => !(await text(card(b).getByTestId('folder-state'))).startsWith('Paused'));
      await action(b, 'rescan').click();
      [holder, holderSide, conflict] = await until('a conflict copy on either side', async () => {
        for (const [side, p] of pages) {
          const list = await rest(p, `/rest/folders/${FOLDER}/conflicts`);
          const c = list.find((x) => x.original === 'hello.txt');
          if (c) return [p, side, c];
        }
        return null;
      });
    });

    await step(`the conflict resolved from ${holderSide.name}'s conflicts view (keep the copy)`, async () => {
      const root = path.join(holderSide.data, FOLDER);
      const copy = await until('the copy on disk', () => read(path.join(root, conflict.conflict)));
      await action(holder, 'conflicts').click();
      const row = holder.locator('[data-testid=conflict][data-name="hello.txt"]');
      await row.waitFor();
      const shown = await row.innerText();
      if (!shown.includes(conflict.conflict)) throw new Error(`the view does not name the copy: ${shown}`);
      await shot(holder, '05-conflicts');
      await row.locator('button[data-keep=conflict]').click();
      await holder.getByTestId('no-conflicts').waitFor({ timeout: LIMIT });
      await closeView(holder);
      await until('the original holds the copy\'s bytes', () => read(path.join(root, 'hello.txt')) === copy);
      await until('the copy is gone', () => read(path.join(root, conflict.conflict)) === null);
      await until('both sides agree', () => read(fa('hello.txt')) === copy && read(fb('hello.txt')) === copy);
      await until('no conflict copy left on either disk', () => [A, B].every((s) =>
        !fs.readdirSync(path.join(s.data, FOLDER)).some((n) => n.includes('sync-conflict'))));
    });

    await step('a version restored from B\'s versions browser', async () => {
      const v1 = 'notes, first draft\n';
      const v2 = 'notes, second draft with more words\n';
      fs.writeFileSync(fa('notes.txt'), v1);
      await action(a, 'rescan').click();
      await until('v1 on B', () => read(fb('notes.txt')) === v1);
      fs.writeFileSync(fa('notes.txt'), v2);
      await action(a, 'rescan').click();
      await until('v2 on B', () => read(fb('notes.txt')) === v2);
      await action(b, 'versions').click();
      const row = b.locator('[data-testid=version][data-name="notes.txt"]');
      await row.first().waitFor({ timeout: LIMIT });
      await shot(b, '06-versions');
      await row.first().getByRole('button', { name: 'Restore' }).click();
      await until('B has v1 again', () => read(fb('notes.txt')) === v1);
      await until('and so does A', () => read(fa('notes.txt')) === v1);
      await closeView(b);
    });

    await step('ignores: a bad line is refused, a good one saved to .stignore', async () => {
      const stignore = fa('.stignore');
      const before = read(stignore);
      await action(a, 'ignores').click();
      await a.locator('#ignores-text').fill('#include no-such-file\n');
      await a.getByRole('button', { name: 'Save' }).click();
      await until('the error shown', async () => (await text(a.getByTestId('ignores-error'))).length > 0);
      if (read(stignore) !== before) throw new Error('a refused .stignore was written');
      await shot(a, '07-ignores');
      await a.locator('#ignores-text').fill('*.tmp\n');
      await a.getByRole('button', { name: 'Save' }).click();
      await until('.stignore written', () => read(stignore) === '*.tmp\n');
      if (await text(a.getByTestId('ignores-error'))) throw new Error('an error is still shown');
      await closeView(a);
    });

    await step('usable at 375 px wide', async () => {
      const { context, page } = await openPage(browser, B, { viewport: { width: 375, height: 800 }, isMobile: true, hasTouch: true });
      await card(page).waitFor();
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      await shot(page, '08-phone-375');
      if (overflow > 0) throw new Error(`the page is ${overflow} px wider than a 375 px screen`);
      await context.close();
    });

    await step('follows prefers-color-scheme: dark', async () => {
      const { context, page } = await openPage(browser, A, { colorScheme: 'dark' });
      await card(page).waitFor();
      const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
      const [r, g, bl] = bg.match(/\d+/g).map(Number);
      await shot(page, '09-dark');
      if (r + g + bl > 3 * 80) throw new Error(`a light background in dark mode: ${bg}`);
      await context.close();
    });

    const errors = logs.filter((l) => l.includes('page error'));
    if (errors.length) throw new Error(`errors in the pages:\n${errors.join('\n')}`);
    console.log('e2e ok');
  } catch (e) {
    console.error(`FAILED at step "${current}": ${e.stack || e}`);
    for (const [side, p] of pages) {
      try {
        await shot(p, `failed-${side.name}`);
        console.error(`--- ${side.name}'s page:\n${await p.locator('body').innerText()}`);
      } catch (x) {
        console.error(`--- ${side.name}'s page unreadable: ${x.message}`);
      }
    }
    console.error(`--- the pages' console:\n${logs.join('\n')}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

await main();
