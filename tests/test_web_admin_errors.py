"""A refused form on /admin (several forms on one page): the error summary links to the
input at fault by its id on that page, the input is marked invalid and described by the
error, and the form gets back what was typed (escaped)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from .webflow import Client, add_user, logged_in, login, make_node, post

ClientMaker = Callable[..., Awaitable[Client]]


def _summary_links(html: str) -> list[str]:
    summary = html.split('<div class="error-summary"', 1)[1].split("</div>", 1)[0]
    return re.findall(r'<a href="#([^"]+)">', summary)


def _tag(html: str, element_id: str) -> str:
    match = re.search(rf'<(?:input|select)[^>]* id="{element_id}"[^>]*>', html)
    assert match, element_id
    return match.group(0)


async def test_a_bad_until_date_links_to_the_until_field(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    admin = await aiohttp_client(node.app)
    await add_user(node, "Admin", "admin")
    await add_user(node, "Carl")
    await login(admin, "Admin")
    data = {"member": "Carl", "role": "moderator", "until": "someday"}
    response = await post(admin, "/admin/grant", data, form="/admin")
    assert response.status == 400
    html = await response.text()
    assert _summary_links(html) == ["g-until"]
    assert '<a href="#g-until">Enter a date like 2027-03-01</a>' in html
    until = _tag(html, "g-until")
    assert 'aria-invalid="true"' in until and 'aria-describedby="g-until-error"' in until
    assert 'value="someday"' in until
    assert '<p class="field-error" id="g-until-error">Enter a date like 2027-03-01</p>' in html
    assert "closes" not in html
    # The rest of the form is kept, and only the field at fault is marked.
    member = _tag(html, "g-member")
    assert 'value="Carl"' in member and "aria-invalid" not in member
    assert '<option value="moderator" selected>' in html
    assert html.count('aria-invalid="true"') == 1
    # The JSON twin names the field and the input.
    response = await admin.post(
        "/admin/grant",
        data={**data, "csrf_token": _token(html)},
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )
    assert response.status == 400
    (error,) = (await response.json())["errors"]
    assert (error["field"], error["anchor"]) == ("until", "g-until")
    # In French, the same link, translated.
    html = await (await post(admin, "/admin/grant?lang=fr", data, form="/admin?lang=fr")).text()
    assert '<a href="#g-until">Saisissez une date comme 2027-03-01</a>' in html


def _token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def test_each_admin_form_error_links_to_its_own_input(
    tmp_path: Path, aiohttp_client: ClientMaker
) -> None:
    node = make_node(tmp_path)
    admin = await logged_in(await aiohttp_client(node.app), node, "Admin", "admin")
    cases = [
        ("/admin/grant", {"member": '"><script>x</script>', "role": "moderator"}, "g-member"),
        ("/admin/grant", {"member": "Admin", "role": "king"}, "g-role"),
        ("/admin/revoke", {"grant": "zz", "reason": "term"}, "r-grant"),
        ("/admin/peers/add", {"url": "ftp://x"}, "p-url"),
    ]
    for path, data, anchor in cases:
        response = await post(admin, path, data, form="/admin")
        assert response.status == 400, (path, data)
        html = await response.text()
        assert _summary_links(html) == [anchor], (path, data)
        assert f'id="{anchor}"' in html and f'id="{anchor}-error"' in html
        assert 'aria-invalid="true"' in _tag(html, anchor)
        assert "<script>x</script>" not in html
    html = await (
        await post(admin, "/admin/revoke", {"grant": "zz", "reason": "term"}, form="/admin")
    ).text()
    assert 'value="term"' in _tag(html, "r-reason")
    # An error of no field on the page (removing a peer this node does not have) links
    # nowhere and marks no input.
    response = await post(admin, "/admin/peers/remove", {"url": "http://x"}, form="/admin")
    assert response.status == 404
    html = await response.text()
    assert _summary_links(html) == [] and "No such peer" in html
    assert "aria-invalid" not in html
