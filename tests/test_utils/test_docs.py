"""Generated blocks of the docs pages and the --doc/--readme options (mmbasis.utils.docs)."""

import argparse

import pytest

from mmbasis.utils.docs import add_doc_option, block_problem, doc_target, replace_marked_block, write_block


def test_replace_marked_block_needs_one_ordered_pair():
    text = 'a\n<!-- x:start -->\nold\n<!-- x:end -->\nb'
    assert replace_marked_block(text, 'x', 'new') == 'a\n<!-- x:start -->\nnew\n<!-- x:end -->\nb'
    for bad in ('a', text + text, '<!-- x:end -->\n<!-- x:start -->'):
        with pytest.raises(ValueError, match=r'page.md must contain one <!-- x:start --> line'):
            replace_marked_block(bad, 'x', 'new', where='page.md')


def test_write_block_replaces_only_the_block_and_block_problem_says_why_not(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('intro\n<!-- t:start -->\nold\n<!-- t:end -->\nafter\n', encoding='utf-8')
    assert block_problem(str(page), 't') is None
    write_block(str(page), 't', '| new |')
    assert page.read_text(encoding='utf-8') == 'intro\n<!-- t:start -->\n| new |\n<!-- t:end -->\nafter\n'
    assert 'must contain one <!-- u:start -->' in block_problem(str(page), 'u')
    assert block_problem(str(tmp_path / 'none.md'), 't').endswith('none.md: no such file')
    with pytest.raises(ValueError):
        write_block(str(page), 'u', 'x')
    assert '| new |' in page.read_text(encoding='utf-8')  # a failed write leaves the page as it was


@pytest.mark.parametrize('always', [False, True])
def test_doc_option_and_its_deprecated_readme_alias(always, capsys):
    parser = argparse.ArgumentParser()
    add_doc_option(parser, 'docs/page.md', 'the table', always=always)
    assert doc_target(parser.parse_args([])) == ('docs/page.md' if always else None)
    assert doc_target(parser.parse_args(['--doc', 'x.md'])) == 'x.md'
    if not always:
        assert doc_target(parser.parse_args(['--doc'])) == 'docs/page.md'  # alone: the page of the block
    with pytest.warns(DeprecationWarning, match='--readme FILE is deprecated: use --doc FILE'):
        assert doc_target(parser.parse_args(['--readme', 'README.md'])) == 'README.md'
    assert '--readme is deprecated' in capsys.readouterr().err
