// The dashboard in a real headless Chromium, driven by playwright-core
// (which never downloads a browser: it drives the system's `chromium`).
// Run by the `dashboard::the_dashboard_works_in_a_real_browser` test, which
// starts the gateway and checks the home afterwards; each step prints
// "ok: ..." and a screenshot of each page goes to $SCREENSHOTS.
//
// Environment: NODE_MODULES (where playwright-core is), CHROMIUM (the
// browser), DASHBOARD (http://127.0.0.1:PORT), PORT, PASSWORD, SCREENSHOTS.
"use strict";

const path = require("path");
const { chromium } = require(path.join(process.env.NODE_MODULES, "playwright-core"));

const dashboard = process.env.DASHBOARD;
const port = process.env.PORT;
const password = process.env.PASSWORD;
const shots = process.env.SCREENSHOTS;
const TIMEOUT = 60_000;

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function shot(page, name) {
  // From the top: the sticky header would otherwise sit mid-page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// The page a failure is reported from: its text and a screenshot.
let current = null;

async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      // A name that resolves to this machine, as a rebinding attack makes
      // one: the dashboard must refuse it.
      "--host-resolver-rules=MAP rebound.test 127.0.0.1",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  current = page;
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !/status of 40[13]/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });

  // Log in (bound beyond loopback: a password is required).
  await page.goto(dashboard);
  await page.waitForSelector("#login");
  check(await page.isHidden("#nav"), "the navigation is hidden before the login");
  await shot(page, "login");
  await page.fill("#password", "not the password");
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#login .error:has-text('wrong password')");
  await page.fill("#password", password);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#status-version");
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "talaria_session");
  check(session && session.httpOnly && session.sameSite === "Strict", `cookie attributes: ${JSON.stringify(session)}`);
  check(!(await page.evaluate(() => document.cookie)).includes("talaria_session"), "the page's script cannot read the cookie");
  console.log("ok: logged in with the password; the cookie is HttpOnly and SameSite=Strict");

  // Status.
  await page.waitForSelector("#status-model .value");
  await shot(page, "status");
  console.log("ok: status page");

  // Chat, streamed, with a tool call shown as it runs.
  await page.click("nav a[data-page=chat]");
  await page.fill("#chat-input", "How many words are in 'one two three'?");
  await page.press("#chat-input", "Enter");
  await page.waitForSelector("#chat-log .bubble.assistant:not([data-streaming])");
  const answer = await page.textContent("#chat-log .bubble.assistant");
  check(answer === "The text has 3 words.", `the answer: ${answer}`);
  const chunks = await page.getAttribute("#chat-log .bubble.assistant", "data-chunks");
  check(Number(chunks) >= 2, `the answer arrived in pieces (${chunks})`);
  const tools = await page.$$eval("#chat-log .bubble.tool", (nodes) => nodes.map((n) => n.textContent));
  check(tools.some((t) => t.includes("text__count") && t.includes("finished")), `tool progress: ${await page.innerHTML("#chat-log")}`);
  const sessionLine = await page.textContent("#chat-session");
  check(/^Session \S+/.test(sessionLine), `the chat names its session: ${sessionLine}`);
  await shot(page, "chat");
  console.log(`ok: chat streamed in ${chunks} pieces with tool progress ${JSON.stringify(tools)}`);

  // A command that needs approval: the panel (on every page) shows it,
  // and a click approves it once.
  await page.fill("#chat-input", "Clean up the temporary files.");
  await page.press("#chat-input", "Enter");
  await page.waitForSelector("#approvals .approval");
  const asked = await page.textContent("#approvals .approval");
  check(
    asked.includes("find . -name junk.tmp -delete") && asked.includes("the agent's terminal"),
    `the approval: ${asked}`,
  );
  await shot(page, "approval");
  await page.click("#approvals .approval button:has-text('Approve once')");
  await page.waitForSelector("#approvals", { state: "hidden" });
  await page.waitForFunction(() =>
    [...document.querySelectorAll("#chat-log .bubble.assistant")].some(
      (node) => node.textContent === "Cleaned." && !node.hasAttribute("data-streaming"),
    ),
  );
  console.log("ok: a command waited for approval on the page and was approved there");

  // Sessions: full-text search, open one.
  await page.click("nav a[data-page=sessions]");
  await page.waitForSelector("#session-results li");
  await page.fill("#session-search", "three");
  await page.click("form.row button[type=submit]");
  await page.waitForSelector("#session-results li.hit");
  await shot(page, "sessions");
  await page.click("#session-results li.hit a");
  await page.waitForSelector("#session-messages .bubble.user");
  const opened = await page.textContent("#session-messages");
  check(opened.includes("3 words"), `the session's messages: ${opened}`);
  await shot(page, "session");
  console.log("ok: session found by full-text search and opened");

  // Skills: review and grant the pending one.
  await page.click("nav a[data-page=skills]");
  await page.waitForSelector("#skill-word-stats[data-state=pending]");
  await page.click("#skill-word-stats button.grant");
  await page.waitForSelector("#skill-word-stats .review");
  const review = await page.textContent("#skill-word-stats .review");
  check(review.includes("blake3:") && review.includes("timeout 2000 ms"), `the review shows the hash and limits: ${review}`);
  await shot(page, "skills-review");
  await page.click("#skill-word-stats button.confirm-grant");
  await page.waitForSelector("#skill-word-stats[data-state=granted]");
  await shot(page, "skills");
  console.log("ok: pending skill reviewed and granted");

  // Memory: add an entry to USER.md.
  await page.click("nav a[data-page=memory]");
  await page.waitForSelector("#memory-user");
  await page.fill("#user-new", "Prefers metric units.");
  await page.click("#user-add");
  await page.waitForSelector("#memory-user li textarea");
  const entry = await page.inputValue("#memory-user li textarea");
  check(entry === "Prefers metric units.", `the entry: ${entry}`);
  const usage = await page.textContent("#user-usage");
  check(usage.startsWith("21 / "), `usage: ${usage}`);
  await shot(page, "memory");
  console.log("ok: memory edited");

  // Logs, live.
  await page.click("nav a[data-page=logs]");
  await page.waitForSelector("#log-lines div:has-text('/api/memory/user')");
  await shot(page, "logs");
  console.log("ok: logs show the requests");

  // A change without the CSRF token, from the page's own origin, is refused.
  const status = await page.evaluate(async () => {
    const response = await fetch("/api/memory/user", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ action: "add", content: "Planted without a token." }),
    });
    return response.status;
  });
  check(status === 403, `a POST without the CSRF token got ${status}`);
  console.log("ok: a POST without the CSRF token is refused");

  // DNS rebinding: the same server under a foreign name is refused.
  const rebound = await context.newPage();
  const response = await rebound.goto(`http://rebound.test:${port}/`);
  check(response.status() === 403, `the rebound name got ${response.status()}`);
  await rebound.close();
  console.log("ok: a foreign Host is refused");

  // A phone's width: nothing scrolls sideways.
  await page.setViewportSize({ width: 390, height: 844 });
  for (const name of ["status", "chat", "skills", "memory"]) {
    await page.click(`nav a[data-page=${name}]`);
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${name} scrolls sideways by ${overflow}px at 390px`);
    await shot(page, `phone-${name}`);
  }
  console.log("ok: usable at a phone's width");

  await page.setViewportSize({ width: 1280, height: 860 });
  await page.click("#logout");
  await page.waitForSelector("#login");
  console.log("ok: logged out");

  check(problems.length === 0, problems.join("\n"));
  await browser.close();
}

main().then(
  () => console.log("done"),
  async (error) => {
    console.error(error.stack || String(error));
    if (current) {
      try {
        console.error(`--- the page (failure.png) ---\n${await current.innerText("body")}`);
        await shot(current, "failure");
      } catch (_) {
        // The browser is gone.
      }
    }
    process.exit(1);
  },
);
