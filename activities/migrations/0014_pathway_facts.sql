-- Per-pathway facts, kept as the record changes (issue 25).
--
-- The indicators used to recompute every pathway's facts from the whole event log for every
-- read (rop_pathway_facts(), 0009): ~2 s a point at 100,000 pathways. Now each pathway has one
-- row holding all an indicator reads: the referral's scope (trust, municipality, age group,
-- residence, reason), the summary columns the indicators count (copied from `pathways` as a
-- step changes them), and the dated milestones from the event log. The row changes in the same
-- statement that records a step: triggers fold each event into it as the event is inserted and
-- copy the summary as it is updated, so a step and its facts commit together or not at all,
-- whichever statement writes the step (the step statement, a repair from the workflow). An
-- indicator read is one grouped pass over this table alone; the API's role reads facts, never
-- step content (its right to rop_pathway_facts() goes with the function).
--
-- Working days here are the law's (Monday to Friday, public holidays out): the national
-- indicators count them so, whatever a deployment's `working_day_rule`.

-- The Norwegian public holidays the pathway counts (rop_domain.calendar, 2000-2100), frozen
-- here as data; a test holds this table equal to the calendar's.
CREATE TABLE public_holidays (day date PRIMARY KEY);
INSERT INTO public_holidays
SELECT unnest('{
    2000-01-01,2000-04-20,2000-04-21,2000-04-23,2000-04-24,2000-05-01,2000-05-17,2000-06-01,2000-06-11,2000-06-12,2000-12-25,2000-12-26,
    2001-01-01,2001-04-12,2001-04-13,2001-04-15,2001-04-16,2001-05-01,2001-05-17,2001-05-24,2001-06-03,2001-06-04,2001-12-25,2001-12-26,
    2002-01-01,2002-03-28,2002-03-29,2002-03-31,2002-04-01,2002-05-01,2002-05-09,2002-05-17,2002-05-19,2002-05-20,2002-12-25,2002-12-26,
    2003-01-01,2003-04-17,2003-04-18,2003-04-20,2003-04-21,2003-05-01,2003-05-17,2003-05-29,2003-06-08,2003-06-09,2003-12-25,2003-12-26,
    2004-01-01,2004-04-08,2004-04-09,2004-04-11,2004-04-12,2004-05-01,2004-05-17,2004-05-20,2004-05-30,2004-05-31,2004-12-25,2004-12-26,
    2005-01-01,2005-03-24,2005-03-25,2005-03-27,2005-03-28,2005-05-01,2005-05-05,2005-05-15,2005-05-16,2005-05-17,2005-12-25,2005-12-26,
    2006-01-01,2006-04-13,2006-04-14,2006-04-16,2006-04-17,2006-05-01,2006-05-17,2006-05-25,2006-06-04,2006-06-05,2006-12-25,2006-12-26,
    2007-01-01,2007-04-05,2007-04-06,2007-04-08,2007-04-09,2007-05-01,2007-05-17,2007-05-27,2007-05-28,2007-12-25,2007-12-26,
    2008-01-01,2008-03-20,2008-03-21,2008-03-23,2008-03-24,2008-05-01,2008-05-11,2008-05-12,2008-05-17,2008-12-25,2008-12-26,
    2009-01-01,2009-04-09,2009-04-10,2009-04-12,2009-04-13,2009-05-01,2009-05-17,2009-05-21,2009-05-31,2009-06-01,2009-12-25,2009-12-26,
    2010-01-01,2010-04-01,2010-04-02,2010-04-04,2010-04-05,2010-05-01,2010-05-13,2010-05-17,2010-05-23,2010-05-24,2010-12-25,2010-12-26,
    2011-01-01,2011-04-21,2011-04-22,2011-04-24,2011-04-25,2011-05-01,2011-05-17,2011-06-02,2011-06-12,2011-06-13,2011-12-25,2011-12-26,
    2012-01-01,2012-04-05,2012-04-06,2012-04-08,2012-04-09,2012-05-01,2012-05-17,2012-05-27,2012-05-28,2012-12-25,2012-12-26,
    2013-01-01,2013-03-28,2013-03-29,2013-03-31,2013-04-01,2013-05-01,2013-05-09,2013-05-17,2013-05-19,2013-05-20,2013-12-25,2013-12-26,
    2014-01-01,2014-04-17,2014-04-18,2014-04-20,2014-04-21,2014-05-01,2014-05-17,2014-05-29,2014-06-08,2014-06-09,2014-12-25,2014-12-26,
    2015-01-01,2015-04-02,2015-04-03,2015-04-05,2015-04-06,2015-05-01,2015-05-14,2015-05-17,2015-05-24,2015-05-25,2015-12-25,2015-12-26,
    2016-01-01,2016-03-24,2016-03-25,2016-03-27,2016-03-28,2016-05-01,2016-05-05,2016-05-15,2016-05-16,2016-05-17,2016-12-25,2016-12-26,
    2017-01-01,2017-04-13,2017-04-14,2017-04-16,2017-04-17,2017-05-01,2017-05-17,2017-05-25,2017-06-04,2017-06-05,2017-12-25,2017-12-26,
    2018-01-01,2018-03-29,2018-03-30,2018-04-01,2018-04-02,2018-05-01,2018-05-10,2018-05-17,2018-05-20,2018-05-21,2018-12-25,2018-12-26,
    2019-01-01,2019-04-18,2019-04-19,2019-04-21,2019-04-22,2019-05-01,2019-05-17,2019-05-30,2019-06-09,2019-06-10,2019-12-25,2019-12-26,
    2020-01-01,2020-04-09,2020-04-10,2020-04-12,2020-04-13,2020-05-01,2020-05-17,2020-05-21,2020-05-31,2020-06-01,2020-12-25,2020-12-26,
    2021-01-01,2021-04-01,2021-04-02,2021-04-04,2021-04-05,2021-05-01,2021-05-13,2021-05-17,2021-05-23,2021-05-24,2021-12-25,2021-12-26,
    2022-01-01,2022-04-14,2022-04-15,2022-04-17,2022-04-18,2022-05-01,2022-05-17,2022-05-26,2022-06-05,2022-06-06,2022-12-25,2022-12-26,
    2023-01-01,2023-04-06,2023-04-07,2023-04-09,2023-04-10,2023-05-01,2023-05-17,2023-05-18,2023-05-28,2023-05-29,2023-12-25,2023-12-26,
    2024-01-01,2024-03-28,2024-03-29,2024-03-31,2024-04-01,2024-05-01,2024-05-09,2024-05-17,2024-05-19,2024-05-20,2024-12-25,2024-12-26,
    2025-01-01,2025-04-17,2025-04-18,2025-04-20,2025-04-21,2025-05-01,2025-05-17,2025-05-29,2025-06-08,2025-06-09,2025-12-25,2025-12-26,
    2026-01-01,2026-04-02,2026-04-03,2026-04-05,2026-04-06,2026-05-01,2026-05-14,2026-05-17,2026-05-24,2026-05-25,2026-12-25,2026-12-26,
    2027-01-01,2027-03-25,2027-03-26,2027-03-28,2027-03-29,2027-05-01,2027-05-06,2027-05-16,2027-05-17,2027-12-25,2027-12-26,
    2028-01-01,2028-04-13,2028-04-14,2028-04-16,2028-04-17,2028-05-01,2028-05-17,2028-05-25,2028-06-04,2028-06-05,2028-12-25,2028-12-26,
    2029-01-01,2029-03-29,2029-03-30,2029-04-01,2029-04-02,2029-05-01,2029-05-10,2029-05-17,2029-05-20,2029-05-21,2029-12-25,2029-12-26,
    2030-01-01,2030-04-18,2030-04-19,2030-04-21,2030-04-22,2030-05-01,2030-05-17,2030-05-30,2030-06-09,2030-06-10,2030-12-25,2030-12-26,
    2031-01-01,2031-04-10,2031-04-11,2031-04-13,2031-04-14,2031-05-01,2031-05-17,2031-05-22,2031-06-01,2031-06-02,2031-12-25,2031-12-26,
    2032-01-01,2032-03-25,2032-03-26,2032-03-28,2032-03-29,2032-05-01,2032-05-06,2032-05-16,2032-05-17,2032-12-25,2032-12-26,
    2033-01-01,2033-04-14,2033-04-15,2033-04-17,2033-04-18,2033-05-01,2033-05-17,2033-05-26,2033-06-05,2033-06-06,2033-12-25,2033-12-26,
    2034-01-01,2034-04-06,2034-04-07,2034-04-09,2034-04-10,2034-05-01,2034-05-17,2034-05-18,2034-05-28,2034-05-29,2034-12-25,2034-12-26,
    2035-01-01,2035-03-22,2035-03-23,2035-03-25,2035-03-26,2035-05-01,2035-05-03,2035-05-13,2035-05-14,2035-05-17,2035-12-25,2035-12-26,
    2036-01-01,2036-04-10,2036-04-11,2036-04-13,2036-04-14,2036-05-01,2036-05-17,2036-05-22,2036-06-01,2036-06-02,2036-12-25,2036-12-26,
    2037-01-01,2037-04-02,2037-04-03,2037-04-05,2037-04-06,2037-05-01,2037-05-14,2037-05-17,2037-05-24,2037-05-25,2037-12-25,2037-12-26,
    2038-01-01,2038-04-22,2038-04-23,2038-04-25,2038-04-26,2038-05-01,2038-05-17,2038-06-03,2038-06-13,2038-06-14,2038-12-25,2038-12-26,
    2039-01-01,2039-04-07,2039-04-08,2039-04-10,2039-04-11,2039-05-01,2039-05-17,2039-05-19,2039-05-29,2039-05-30,2039-12-25,2039-12-26,
    2040-01-01,2040-03-29,2040-03-30,2040-04-01,2040-04-02,2040-05-01,2040-05-10,2040-05-17,2040-05-20,2040-05-21,2040-12-25,2040-12-26,
    2041-01-01,2041-04-18,2041-04-19,2041-04-21,2041-04-22,2041-05-01,2041-05-17,2041-05-30,2041-06-09,2041-06-10,2041-12-25,2041-12-26,
    2042-01-01,2042-04-03,2042-04-04,2042-04-06,2042-04-07,2042-05-01,2042-05-15,2042-05-17,2042-05-25,2042-05-26,2042-12-25,2042-12-26,
    2043-01-01,2043-03-26,2043-03-27,2043-03-29,2043-03-30,2043-05-01,2043-05-07,2043-05-17,2043-05-18,2043-12-25,2043-12-26,
    2044-01-01,2044-04-14,2044-04-15,2044-04-17,2044-04-18,2044-05-01,2044-05-17,2044-05-26,2044-06-05,2044-06-06,2044-12-25,2044-12-26,
    2045-01-01,2045-04-06,2045-04-07,2045-04-09,2045-04-10,2045-05-01,2045-05-17,2045-05-18,2045-05-28,2045-05-29,2045-12-25,2045-12-26,
    2046-01-01,2046-03-22,2046-03-23,2046-03-25,2046-03-26,2046-05-01,2046-05-03,2046-05-13,2046-05-14,2046-05-17,2046-12-25,2046-12-26,
    2047-01-01,2047-04-11,2047-04-12,2047-04-14,2047-04-15,2047-05-01,2047-05-17,2047-05-23,2047-06-02,2047-06-03,2047-12-25,2047-12-26,
    2048-01-01,2048-04-02,2048-04-03,2048-04-05,2048-04-06,2048-05-01,2048-05-14,2048-05-17,2048-05-24,2048-05-25,2048-12-25,2048-12-26,
    2049-01-01,2049-04-15,2049-04-16,2049-04-18,2049-04-19,2049-05-01,2049-05-17,2049-05-27,2049-06-06,2049-06-07,2049-12-25,2049-12-26,
    2050-01-01,2050-04-07,2050-04-08,2050-04-10,2050-04-11,2050-05-01,2050-05-17,2050-05-19,2050-05-29,2050-05-30,2050-12-25,2050-12-26,
    2051-01-01,2051-03-30,2051-03-31,2051-04-02,2051-04-03,2051-05-01,2051-05-11,2051-05-17,2051-05-21,2051-05-22,2051-12-25,2051-12-26,
    2052-01-01,2052-04-18,2052-04-19,2052-04-21,2052-04-22,2052-05-01,2052-05-17,2052-05-30,2052-06-09,2052-06-10,2052-12-25,2052-12-26,
    2053-01-01,2053-04-03,2053-04-04,2053-04-06,2053-04-07,2053-05-01,2053-05-15,2053-05-17,2053-05-25,2053-05-26,2053-12-25,2053-12-26,
    2054-01-01,2054-03-26,2054-03-27,2054-03-29,2054-03-30,2054-05-01,2054-05-07,2054-05-17,2054-05-18,2054-12-25,2054-12-26,
    2055-01-01,2055-04-15,2055-04-16,2055-04-18,2055-04-19,2055-05-01,2055-05-17,2055-05-27,2055-06-06,2055-06-07,2055-12-25,2055-12-26,
    2056-01-01,2056-03-30,2056-03-31,2056-04-02,2056-04-03,2056-05-01,2056-05-11,2056-05-17,2056-05-21,2056-05-22,2056-12-25,2056-12-26,
    2057-01-01,2057-04-19,2057-04-20,2057-04-22,2057-04-23,2057-05-01,2057-05-17,2057-05-31,2057-06-10,2057-06-11,2057-12-25,2057-12-26,
    2058-01-01,2058-04-11,2058-04-12,2058-04-14,2058-04-15,2058-05-01,2058-05-17,2058-05-23,2058-06-02,2058-06-03,2058-12-25,2058-12-26,
    2059-01-01,2059-03-27,2059-03-28,2059-03-30,2059-03-31,2059-05-01,2059-05-08,2059-05-17,2059-05-18,2059-05-19,2059-12-25,2059-12-26,
    2060-01-01,2060-04-15,2060-04-16,2060-04-18,2060-04-19,2060-05-01,2060-05-17,2060-05-27,2060-06-06,2060-06-07,2060-12-25,2060-12-26,
    2061-01-01,2061-04-07,2061-04-08,2061-04-10,2061-04-11,2061-05-01,2061-05-17,2061-05-19,2061-05-29,2061-05-30,2061-12-25,2061-12-26,
    2062-01-01,2062-03-23,2062-03-24,2062-03-26,2062-03-27,2062-05-01,2062-05-04,2062-05-14,2062-05-15,2062-05-17,2062-12-25,2062-12-26,
    2063-01-01,2063-04-12,2063-04-13,2063-04-15,2063-04-16,2063-05-01,2063-05-17,2063-05-24,2063-06-03,2063-06-04,2063-12-25,2063-12-26,
    2064-01-01,2064-04-03,2064-04-04,2064-04-06,2064-04-07,2064-05-01,2064-05-15,2064-05-17,2064-05-25,2064-05-26,2064-12-25,2064-12-26,
    2065-01-01,2065-03-26,2065-03-27,2065-03-29,2065-03-30,2065-05-01,2065-05-07,2065-05-17,2065-05-18,2065-12-25,2065-12-26,
    2066-01-01,2066-04-08,2066-04-09,2066-04-11,2066-04-12,2066-05-01,2066-05-17,2066-05-20,2066-05-30,2066-05-31,2066-12-25,2066-12-26,
    2067-01-01,2067-03-31,2067-04-01,2067-04-03,2067-04-04,2067-05-01,2067-05-12,2067-05-17,2067-05-22,2067-05-23,2067-12-25,2067-12-26,
    2068-01-01,2068-04-19,2068-04-20,2068-04-22,2068-04-23,2068-05-01,2068-05-17,2068-05-31,2068-06-10,2068-06-11,2068-12-25,2068-12-26,
    2069-01-01,2069-04-11,2069-04-12,2069-04-14,2069-04-15,2069-05-01,2069-05-17,2069-05-23,2069-06-02,2069-06-03,2069-12-25,2069-12-26,
    2070-01-01,2070-03-27,2070-03-28,2070-03-30,2070-03-31,2070-05-01,2070-05-08,2070-05-17,2070-05-18,2070-05-19,2070-12-25,2070-12-26,
    2071-01-01,2071-04-16,2071-04-17,2071-04-19,2071-04-20,2071-05-01,2071-05-17,2071-05-28,2071-06-07,2071-06-08,2071-12-25,2071-12-26,
    2072-01-01,2072-04-07,2072-04-08,2072-04-10,2072-04-11,2072-05-01,2072-05-17,2072-05-19,2072-05-29,2072-05-30,2072-12-25,2072-12-26,
    2073-01-01,2073-03-23,2073-03-24,2073-03-26,2073-03-27,2073-05-01,2073-05-04,2073-05-14,2073-05-15,2073-05-17,2073-12-25,2073-12-26,
    2074-01-01,2074-04-12,2074-04-13,2074-04-15,2074-04-16,2074-05-01,2074-05-17,2074-05-24,2074-06-03,2074-06-04,2074-12-25,2074-12-26,
    2075-01-01,2075-04-04,2075-04-05,2075-04-07,2075-04-08,2075-05-01,2075-05-16,2075-05-17,2075-05-26,2075-05-27,2075-12-25,2075-12-26,
    2076-01-01,2076-04-16,2076-04-17,2076-04-19,2076-04-20,2076-05-01,2076-05-17,2076-05-28,2076-06-07,2076-06-08,2076-12-25,2076-12-26,
    2077-01-01,2077-04-08,2077-04-09,2077-04-11,2077-04-12,2077-05-01,2077-05-17,2077-05-20,2077-05-30,2077-05-31,2077-12-25,2077-12-26,
    2078-01-01,2078-03-31,2078-04-01,2078-04-03,2078-04-04,2078-05-01,2078-05-12,2078-05-17,2078-05-22,2078-05-23,2078-12-25,2078-12-26,
    2079-01-01,2079-04-20,2079-04-21,2079-04-23,2079-04-24,2079-05-01,2079-05-17,2079-06-01,2079-06-11,2079-06-12,2079-12-25,2079-12-26,
    2080-01-01,2080-04-04,2080-04-05,2080-04-07,2080-04-08,2080-05-01,2080-05-16,2080-05-17,2080-05-26,2080-05-27,2080-12-25,2080-12-26,
    2081-01-01,2081-03-27,2081-03-28,2081-03-30,2081-03-31,2081-05-01,2081-05-08,2081-05-17,2081-05-18,2081-05-19,2081-12-25,2081-12-26,
    2082-01-01,2082-04-16,2082-04-17,2082-04-19,2082-04-20,2082-05-01,2082-05-17,2082-05-28,2082-06-07,2082-06-08,2082-12-25,2082-12-26,
    2083-01-01,2083-04-01,2083-04-02,2083-04-04,2083-04-05,2083-05-01,2083-05-13,2083-05-17,2083-05-23,2083-05-24,2083-12-25,2083-12-26,
    2084-01-01,2084-03-23,2084-03-24,2084-03-26,2084-03-27,2084-05-01,2084-05-04,2084-05-14,2084-05-15,2084-05-17,2084-12-25,2084-12-26,
    2085-01-01,2085-04-12,2085-04-13,2085-04-15,2085-04-16,2085-05-01,2085-05-17,2085-05-24,2085-06-03,2085-06-04,2085-12-25,2085-12-26,
    2086-01-01,2086-03-28,2086-03-29,2086-03-31,2086-04-01,2086-05-01,2086-05-09,2086-05-17,2086-05-19,2086-05-20,2086-12-25,2086-12-26,
    2087-01-01,2087-04-17,2087-04-18,2087-04-20,2087-04-21,2087-05-01,2087-05-17,2087-05-29,2087-06-08,2087-06-09,2087-12-25,2087-12-26,
    2088-01-01,2088-04-08,2088-04-09,2088-04-11,2088-04-12,2088-05-01,2088-05-17,2088-05-20,2088-05-30,2088-05-31,2088-12-25,2088-12-26,
    2089-01-01,2089-03-31,2089-04-01,2089-04-03,2089-04-04,2089-05-01,2089-05-12,2089-05-17,2089-05-22,2089-05-23,2089-12-25,2089-12-26,
    2090-01-01,2090-04-13,2090-04-14,2090-04-16,2090-04-17,2090-05-01,2090-05-17,2090-05-25,2090-06-04,2090-06-05,2090-12-25,2090-12-26,
    2091-01-01,2091-04-05,2091-04-06,2091-04-08,2091-04-09,2091-05-01,2091-05-17,2091-05-27,2091-05-28,2091-12-25,2091-12-26,
    2092-01-01,2092-03-27,2092-03-28,2092-03-30,2092-03-31,2092-05-01,2092-05-08,2092-05-17,2092-05-18,2092-05-19,2092-12-25,2092-12-26,
    2093-01-01,2093-04-09,2093-04-10,2093-04-12,2093-04-13,2093-05-01,2093-05-17,2093-05-21,2093-05-31,2093-06-01,2093-12-25,2093-12-26,
    2094-01-01,2094-04-01,2094-04-02,2094-04-04,2094-04-05,2094-05-01,2094-05-13,2094-05-17,2094-05-23,2094-05-24,2094-12-25,2094-12-26,
    2095-01-01,2095-04-21,2095-04-22,2095-04-24,2095-04-25,2095-05-01,2095-05-17,2095-06-02,2095-06-12,2095-06-13,2095-12-25,2095-12-26,
    2096-01-01,2096-04-12,2096-04-13,2096-04-15,2096-04-16,2096-05-01,2096-05-17,2096-05-24,2096-06-03,2096-06-04,2096-12-25,2096-12-26,
    2097-01-01,2097-03-28,2097-03-29,2097-03-31,2097-04-01,2097-05-01,2097-05-09,2097-05-17,2097-05-19,2097-05-20,2097-12-25,2097-12-26,
    2098-01-01,2098-04-17,2098-04-18,2098-04-20,2098-04-21,2098-05-01,2098-05-17,2098-05-29,2098-06-08,2098-06-09,2098-12-25,2098-12-26,
    2099-01-01,2099-04-09,2099-04-10,2099-04-12,2099-04-13,2099-05-01,2099-05-17,2099-05-21,2099-05-31,2099-06-01,2099-12-25,2099-12-26,
    2100-01-01,2100-03-25,2100-03-26,2100-03-28,2100-03-29,2100-05-01,2100-05-06,2100-05-16,2100-05-17,2100-12-25,2100-12-26}'::date[]);

-- Working days after `start` up to and including `finish` (0 if finish <= start), as
-- rop_domain.calendar.working_days_between counts them.
CREATE FUNCTION rop_working_days_between(start date, finish date) RETURNS integer
LANGUAGE sql STABLE STRICT SET search_path = public, pg_temp AS $$
    SELECT count(*)::integer
    FROM generate_series(start + 1, finish, interval '1 day') AS d(day)
    WHERE extract(isodow FROM d.day) < 6
      AND NOT EXISTS (SELECT FROM public_holidays h WHERE h.day = d.day::date)
$$;

-- The `count`-th working day after `start` (`start` is day zero), as add_working_days.
CREATE FUNCTION rop_add_working_days(start date, count integer) RETURNS date
LANGUAGE sql STABLE STRICT SET search_path = public, pg_temp AS $$
    SELECT d.day::date
    FROM generate_series(start + 1, start + 3 * count + 21, interval '1 day') AS d(day)
    WHERE extract(isodow FROM d.day) < 6
      AND NOT EXISTS (SELECT FROM public_holidays h WHERE h.day = d.day::date)
    ORDER BY d.day OFFSET count - 1 LIMIT 1
$$;

-- The ids of the ACT/FACT measures in a plan of measures (a meeting's or a revision's).
CREATE FUNCTION rop_fact_measure_ids(plan jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(m.measure->>'id'), '{}')
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(plan) = 'array' THEN plan ELSE '[]' END)
         AS m(measure)
    WHERE m.measure->>'kind' = 'ambulant-act-fact'
$$;

-- Whether every party recommended for a meeting took part (as a role it attended, or named
-- among free-text attendees); NULL for meetings recorded before recommended parties were.
CREATE FUNCTION rop_all_recommended_attended(meeting jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT bool_and(recommended.role IN (
               SELECT lower(came.role)
               FROM jsonb_array_elements_text(
                        coalesce(meeting->'attended', '[]') || coalesce(meeting->'attendees', '[]'))
                    AS came(role)))
    FROM jsonb_array_elements_text(
             CASE WHEN jsonb_typeof(meeting->'recommended_roles') = 'array'
                  THEN meeting->'recommended_roles' ELSE '[]' END) AS recommended(role)
$$;

CREATE TABLE pathway_facts (
    workflow_id              text PRIMARY KEY REFERENCES pathways (workflow_id) ON DELETE CASCADE,
    -- From the referral: the indicators' scope and breakdowns.
    received_on              date NOT NULL,  -- the date of receipt in Norway: day zero
    health_trust             text NOT NULL,
    municipality             text NOT NULL,
    birth_year               integer,
    residence                text,
    pathway_reason           text,
    -- Copied from the summary row (`pathways`) as steps change it.
    phase                    text NOT NULL,
    assessment_decision      text,
    meeting_deadline         date NOT NULL,
    invited_at               timestamptz,
    invited_on_time          boolean,
    invite_working_days      integer,
    crisis_plan_version      integer,
    crisis_plan_overdue      boolean NOT NULL,
    review_overdue           boolean NOT NULL,
    closed_at                timestamptz,
    -- From the event log.
    assessment_deadline      date NOT NULL,  -- the 10th working day after receipt
    assessed_at              timestamptz,
    assessment_working_days  integer,        -- receipt to assessment
    first_meeting_at         timestamptz,    -- when the first avklaringsmøte was held
    meeting_working_days     integer,        -- receipt to that meeting
    all_recommended_attended boolean,
    has_crisis_plan          boolean NOT NULL DEFAULT false,
    first_crisis_plan_at     timestamptz,
    crisis_plan_versions     integer NOT NULL DEFAULT 0,
    made_with_patient        boolean NOT NULL DEFAULT false,  -- the current crisis plan's
    relatives_involved       boolean NOT NULL DEFAULT false,
    fact_measures            text[] NOT NULL DEFAULT '{}',  -- the current plan's ACT/FACT ids
    cancelled_measures       text[] NOT NULL DEFAULT '{}',  -- ever cancelled, by id
    -- Derived, as the README's indicator table defines them.
    active                   boolean GENERATED ALWAYS AS
                                 (phase NOT IN ('closed', 'not-in-target-group')) STORED,
    -- Age at receipt, in the groups the regional plan speaks of ("unge voksne": 18-25).
    age_group                text GENERATED ALWAYS AS (CASE
                                 WHEN birth_year IS NULL THEN 'unknown'
                                 WHEN extract(year FROM received_on) - birth_year < 18
                                     THEN 'under 18'
                                 WHEN extract(year FROM received_on) - birth_year <= 25
                                     THEN '18-25'
                                 WHEN extract(year FROM received_on) - birth_year <= 64
                                     THEN '26-64'
                                 ELSE '65 and over' END) STORED,
    -- FACT follow-up: an ACT/FACT measure of the current plan that was never cancelled.
    has_fact_measure         boolean GENERATED ALWAYS AS
                                 (NOT (fact_measures <@ cancelled_measures)) STORED
);
CREATE INDEX pathway_facts_received_idx ON pathway_facts (received_on, health_trust);

-- A pathway's row: made with the pathway, its summary columns copied as steps change them.
CREATE FUNCTION rop_facts_of_pathway() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    received date := (NEW.received_at AT TIME ZONE 'Europe/Oslo')::date;
BEGIN
    INSERT INTO pathway_facts (
        workflow_id, received_on, health_trust, municipality, birth_year, residence,
        pathway_reason, phase, assessment_decision, meeting_deadline, invited_at,
        invited_on_time, invite_working_days, crisis_plan_version, crisis_plan_overdue,
        review_overdue, closed_at, assessment_deadline)
    VALUES (
        NEW.workflow_id, received, NEW.health_trust, NEW.municipality, NEW.birth_year,
        NEW.residence, NEW.pathway_reason, NEW.phase, NEW.assessment_decision,
        NEW.meeting_deadline, NEW.invited_at, NEW.invited_on_time, NEW.invite_working_days,
        NEW.crisis_plan_version, NEW.crisis_plan_overdue, NEW.review_overdue, NEW.closed_at,
        rop_add_working_days(received, 10))
    ON CONFLICT (workflow_id) DO UPDATE SET
        phase = EXCLUDED.phase,
        assessment_decision = EXCLUDED.assessment_decision,
        meeting_deadline = EXCLUDED.meeting_deadline,
        invited_at = EXCLUDED.invited_at,
        invited_on_time = EXCLUDED.invited_on_time,
        invite_working_days = EXCLUDED.invite_working_days,
        crisis_plan_version = EXCLUDED.crisis_plan_version,
        crisis_plan_overdue = EXCLUDED.crisis_plan_overdue,
        review_overdue = EXCLUDED.review_overdue,
        closed_at = EXCLUDED.closed_at;
    RETURN NULL;
END $$;

-- One event folded into its pathway's facts. Every branch gives the same row whatever order
-- events of different kinds arrive in; within a kind, the later event (by insertion) holds the
-- current plan, as the event log's order does.
CREATE FUNCTION rop_fold_event_into_facts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    CASE NEW.kind
    WHEN 'assessed' THEN
        UPDATE pathway_facts f
        SET assessed_at = least(f.assessed_at, NEW.occurred_at),
            assessment_working_days = rop_working_days_between(
                f.received_on,
                (least(f.assessed_at, NEW.occurred_at) AT TIME ZONE 'Europe/Oslo')::date)
        WHERE f.workflow_id = NEW.workflow_id;
    WHEN 'meeting-held' THEN
        UPDATE pathway_facts f
        SET first_meeting_at = least(f.first_meeting_at, (NEW.details->>'held_at')::timestamptz),
            meeting_working_days = rop_working_days_between(
                f.received_on,
                (least(f.first_meeting_at, (NEW.details->>'held_at')::timestamptz)
                    AT TIME ZONE 'Europe/Oslo')::date),
            all_recommended_attended = rop_all_recommended_attended(NEW.details),
            fact_measures = rop_fact_measure_ids(
                coalesce(NEW.details->'plan', NEW.details->'measures'))
        WHERE f.workflow_id = NEW.workflow_id;
    WHEN 'plan-revised' THEN
        UPDATE pathway_facts f
        SET fact_measures = rop_fact_measure_ids(
                coalesce(NEW.details->'plan', NEW.details->'measures'))
        WHERE f.workflow_id = NEW.workflow_id;
    WHEN 'measure-cancelled' THEN
        UPDATE pathway_facts f
        SET cancelled_measures = f.cancelled_measures || (NEW.details->>'measure_id')
        WHERE f.workflow_id = NEW.workflow_id AND NEW.details->>'measure_id' IS NOT NULL
          AND NOT coalesce(NEW.details->>'measure_id' = ANY (f.cancelled_measures), false);
    WHEN 'crisis-plan-registered' THEN
        UPDATE pathway_facts f
        SET has_crisis_plan = true,
            first_crisis_plan_at = least(f.first_crisis_plan_at, NEW.occurred_at),
            crisis_plan_versions = f.crisis_plan_versions + 1,
            made_with_patient = coalesce((NEW.details->>'made_with_patient')::boolean, false),
            relatives_involved = coalesce((NEW.details->>'relatives_involved')::boolean, false)
        WHERE f.workflow_id = NEW.workflow_id;
    ELSE
        NULL;
    END CASE;
    RETURN NULL;
END $$;

-- The same facts recomputed from the event log (all pathways', or one's), set-based: what fills
-- the table below, what a repair refreshes a pathway's row from (events written out of order
-- by `rop reconcile --repair`), and what the tests hold the kept rows equal to. The owner's.
CREATE FUNCTION rop_facts_from_events(only_pathway text DEFAULT NULL)
RETURNS TABLE (workflow_id text, received_on date, health_trust text, municipality text,
               birth_year integer, residence text, pathway_reason text, phase text,
               assessment_decision text, meeting_deadline date, invited_at timestamptz,
               invited_on_time boolean, invite_working_days integer,
               crisis_plan_version integer, crisis_plan_overdue boolean, review_overdue boolean,
               closed_at timestamptz, assessment_deadline date,
               assessed_at timestamptz, assessment_working_days integer,
               first_meeting_at timestamptz, meeting_working_days integer,
               all_recommended_attended boolean, has_crisis_plan boolean,
               first_crisis_plan_at timestamptz, crisis_plan_versions integer,
               made_with_patient boolean, relatives_involved boolean,
               fact_measures text[], cancelled_measures text[])
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    SELECT p.workflow_id,
           received.day,
           p.health_trust, p.municipality, p.birth_year, p.residence, p.pathway_reason, p.phase,
           p.assessment_decision, p.meeting_deadline, p.invited_at, p.invited_on_time,
           p.invite_working_days, p.crisis_plan_version, p.crisis_plan_overdue,
           p.review_overdue, p.closed_at,
           rop_add_working_days(received.day, 10),
           assessed.at,
           rop_working_days_between(received.day, (assessed.at AT TIME ZONE 'Europe/Oslo')::date),
           meeting.first_at,
           rop_working_days_between(received.day,
                                    (meeting.first_at AT TIME ZONE 'Europe/Oslo')::date),
           rop_all_recommended_attended(meeting.latest),
           plans.versions > 0,
           plans.first_at,
           plans.versions,
           coalesce((plans.latest->>'made_with_patient')::boolean, false),
           coalesce((plans.latest->>'relatives_involved')::boolean, false),
           rop_fact_measure_ids(measures.list),
           coalesce(cancelled.ids, '{}')
    FROM pathways p
    CROSS JOIN LATERAL (SELECT (p.received_at AT TIME ZONE 'Europe/Oslo')::date AS day) received
    LEFT JOIN LATERAL (SELECT min(e.occurred_at) AS at FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'assessed') assessed
           ON true
    LEFT JOIN LATERAL (SELECT min((e.details->>'held_at')::timestamptz) AS first_at,
                              (array_agg(e.details ORDER BY e.id DESC))[1] AS latest
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'meeting-held') meeting
           ON true
    LEFT JOIN LATERAL (SELECT count(*)::integer AS versions, min(e.occurred_at) AS first_at,
                              (array_agg(e.details ORDER BY e.id DESC))[1] AS latest
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id
                         AND e.kind = 'crisis-plan-registered') plans ON true
    LEFT JOIN LATERAL (SELECT coalesce(e.details->'plan', e.details->'measures') AS list
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id
                         AND e.kind IN ('meeting-held', 'plan-revised')
                       ORDER BY e.id DESC LIMIT 1) measures ON true
    LEFT JOIN LATERAL (SELECT array_agg(DISTINCT e.details->>'measure_id') AS ids
                       FROM pathway_events e
                       WHERE e.workflow_id = p.workflow_id AND e.kind = 'measure-cancelled'
                         AND e.details->>'measure_id' IS NOT NULL) cancelled ON true
    WHERE only_pathway IS NULL OR p.workflow_id = only_pathway
$$;
REVOKE ALL ON FUNCTION rop_facts_from_events(text) FROM PUBLIC;

-- From today's records.
INSERT INTO pathway_facts (
            workflow_id, received_on, health_trust, municipality, birth_year, residence,
            pathway_reason, phase, assessment_decision, meeting_deadline, invited_at,
            invited_on_time, invite_working_days, crisis_plan_version, crisis_plan_overdue,
            review_overdue, closed_at, assessment_deadline, assessed_at, assessment_working_days,
            first_meeting_at, meeting_working_days, all_recommended_attended, has_crisis_plan,
            first_crisis_plan_at, crisis_plan_versions, made_with_patient, relatives_involved,
            fact_measures, cancelled_measures)
SELECT * FROM rop_facts_from_events();

CREATE TRIGGER pathway_facts_of_new_pathway AFTER INSERT ON pathways
    FOR EACH ROW EXECUTE FUNCTION rop_facts_of_pathway();
CREATE TRIGGER pathway_facts_follow_summary AFTER UPDATE ON pathways
    FOR EACH ROW
    WHEN ((OLD.phase, OLD.assessment_decision, OLD.meeting_deadline, OLD.invited_at,
           OLD.invited_on_time, OLD.invite_working_days, OLD.crisis_plan_version,
           OLD.crisis_plan_overdue, OLD.review_overdue, OLD.closed_at)
          IS DISTINCT FROM
          (NEW.phase, NEW.assessment_decision, NEW.meeting_deadline, NEW.invited_at,
           NEW.invited_on_time, NEW.invite_working_days, NEW.crisis_plan_version,
           NEW.crisis_plan_overdue, NEW.review_overdue, NEW.closed_at))
    EXECUTE FUNCTION rop_facts_of_pathway();
CREATE TRIGGER pathway_facts_follow_events AFTER INSERT ON pathway_events
    FOR EACH ROW EXECUTE FUNCTION rop_fold_event_into_facts();

REVOKE ALL ON FUNCTION rop_facts_of_pathway(), rop_fold_event_into_facts() FROM PUBLIC;
GRANT SELECT ON pathway_facts TO rop_api;
GRANT SELECT ON pathway_facts TO rop_worker;

-- The API reads facts now, never step content.
DROP FUNCTION rop_pathway_facts();
